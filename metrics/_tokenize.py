"""coco-caption's text preparation: Stanford PTB tokenization, lower case, punctuation tokens removed.

pycocoevalcap's `PTBTokenizer` writes the captions to a temporary file inside its own package folder and runs
Stanford CoreNLP 3.4.1's PTBTokenizer on it, once for the references and once for the predictions. A caption's
tokens can depend on the NEXT caption of its file: PTB splits the period off "farm b." when the following text
starts with a capital letter, keeps "no." before a digit, and treats the end of the file differently again. So the
same captions must go through the same files ("streams") to get the same tokens. Here every stream needed (the
references and the predictions, of the whole set and of each group) is its own file, and ONE tokenizer process
reads them all (`-ioFileList`, a lexer per file), in a private temporary folder.

Without Java a pure-Python tokenizer stands in. It reproduces the jar's output on every one of the 51k distinct
captions of UCM, RSICD, NWPU, Sydney and RISC (tests/test_metrics.py checks them all, in streams), but it is not a full
port of PTBLexer: exotic punctuation (e-mail addresses, SGML tags, `a!b`) can tokenize differently.
"""

from __future__ import annotations

import logging
import re
import subprocess
import tempfile
from itertools import islice
from pathlib import Path

from ._java import FAST_JVM_FLAGS, java_executable, ptb_jar, require_java

logger = logging.getLogger(__name__)

# pycocoevalcap.tokenizer.ptbtokenizer.PUNCTUATIONS. Its bracket tokens are upper case while the tokenizer runs with
# -lowerCase and so emits "-lrb-": coco-caption keeps brackets as words, and so does this module.
PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

# Characters the PTB lexer treats as line ends (measured on the jar): they would split one caption into two lines.
# pycocoevalcap only replaces "\n" (other ones shift every later caption onto the wrong image); here all become spaces.
_LINE_BREAKS = str.maketrans({"\n": " ", "\r": " ", "\x0b": " ", "\x0c": " ", "\u2028": " ", "\u2029": " "})

_PTB_MAIN = ["edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase"]  # pycocoevalcap's command


def strip_punctuation(line: str) -> str:
    """coco-caption's post-processing of one tokenizer output line."""
    return " ".join(word for word in line.rstrip().split(" ") if word not in PUNCTUATIONS)


def _java_ptb(streams: list[list[str]]) -> list[list[str]]:
    java = require_java("The PTB tokenizer")
    with tempfile.TemporaryDirectory(prefix="ptb-") as folder:
        pairs = []
        for k, sentences in enumerate(streams):
            if not sentences:
                continue
            # as pycocoevalcap writes its file: one caption a line, no newline after the last one
            Path(folder, f"{k}.txt").write_text("\n".join(s.translate(_LINE_BREAKS) for s in sentences), "utf-8")
            pairs.append(f"{k}.txt {k}.tok\n")
        Path(folder, "files.txt").write_text("".join(pairs), "utf-8")
        command = [java, *FAST_JVM_FLAGS, "-cp", str(ptb_jar()), *_PTB_MAIN, "-ioFileList", "files.txt"]
        process = subprocess.run(command, cwd=folder, capture_output=True, check=False)
        if process.returncode != 0:
            detail = process.stderr.decode(errors="replace")[-2000:]
            raise RuntimeError(f"PTBTokenizer failed (exit {process.returncode}): {detail}")
        outputs = []
        for k, sentences in enumerate(streams):
            lines = Path(folder, f"{k}.tok").read_text("utf-8").split("\n") if sentences else []
            if len(lines) != len(sentences):
                raise RuntimeError(f"PTBTokenizer returned {len(lines)} lines for {len(sentences)} sentences")
            outputs.append(lines)
    return outputs


_LETTER = "a-z0-9\u00c0-\u024f"
_PY_TOKEN = re.compile(
    rf"""
      (?<![{_LETTER}])[a-z](?:\.[a-z])+\.                # a.m. u.s. e.g.
    | (?<![{_LETTER}.])[a-z]\.(?![a-z\u00c0-\u024f])(?!\s+(?-i:[A-Z\u00c0-\u00de]))  # "farm b." (no capital next)
    | (?<![{_LETTER}])no\.(?=\s*\d)                       # "no. 5"
    | (?<![{_LETTER}])[a-z]['\u2019](?=[{_LETTER}])      # y'all
    | (?<=[\u2018`'])[a-z]\u2019                          # 'l'
    | \d+(?:[.,]\d+)*(?![.,]\d)(?:-[{_LETTER}]+)*(?![{_LETTER}])  # 1,000  3.5  180-degree
    | \d+(?:[.,]\d+)+                                     # 3.5 of 3.5km
    | (?:can(?=not\b)|ca(?=n['\u2019]t\b)|wo(?=n['\u2019]t\b))                # can not, ca n't, wo n't
    | (?:gon(?=na\b)|wan(?=na\b)|got(?=ta\b)|lem(?=me\b)|gim(?=me\b))         # gon na, wan na, ...
    | n['\u2019]t\b | ['\u2019](?:s|ve|re|ll|d|m)\b      # contractions
    | [{_LETTER}]+(?=n['\u2019]t\b)                      # do of don't
    | \#[{_LETTER}]+                                     # #q
    | [{_LETTER}]+(?:[-_.][{_LETTER}]+)*                 # words, hyphenated words
    | \.\.\. | -- | \S
    """,
    re.VERBOSE | re.IGNORECASE,
)
_PY_TOKEN_MAP = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-", "\u2018": "`"}
_PY_TOKEN_MAP.update({"\u2019": "'", '"': "''", "\u201c": "``", "\u201d": "''", "n\u2019t": "n't"})


def _python_ptb(sentences: list[str]) -> list[str]:
    """PTB output lines (lower-cased, punctuation still in) of one stream, without Java; see the module docstring."""
    lines = [sentence.translate(_LINE_BREAKS).replace("\u200b", "") for sentence in sentences]
    following, outputs = "", []  # the first character of the next non-blank caption: PTB's lookahead reaches it
    for line in reversed(lines):
        tokens = _PY_TOKEN.findall(f"{line}\n{following}" if following else line)[: -1 if following else None]
        tokens = [_PY_TOKEN_MAP.get(token, token) for token in " ".join(tokens).lower().split(" ") if token]
        outputs.append(" ".join("'" + t[1:] if t[0] == "\u2019" and len(t) > 1 else t for t in tokens))
        following = line.lstrip()[:1] or following
    return outputs[::-1]


def ptb_tokenize_streams(streams: list[list[str]], backend: str = "auto") -> list[list[str]]:
    """Tokenize like coco-caption: for each stream (a file for coco-caption), one string of space-separated
    lower-case tokens per sentence, punctuation removed. All streams in one tokenizer process.

    backend: "java" (the jar, exact), "python" (no Java needed), "auto" (java when available).
    """
    if backend not in ("auto", "java", "python"):
        raise ValueError(f"backend={backend!r} is not one of 'auto', 'java', 'python'")
    streams = [list(stream) for stream in streams]
    if not any(streams):
        return [[] for _ in streams]
    if backend == "java" or (backend == "auto" and java_executable() is not None):
        outputs = _java_ptb(streams)
    else:
        if backend == "auto":
            logger.warning("No Java runtime: tokenizing with the pure-Python PTB tokenizer (see metrics/_tokenize.py)")
        outputs = [_python_ptb(stream) if stream else [] for stream in streams]
    return [[strip_punctuation(line) for line in lines] for lines in outputs]


def regroup(flat: list[str], sizes: list[int]) -> list[list[str]]:
    """Undo the flattening of per-image reference lists (tokenized as one stream): runs of `sizes` items."""
    items = iter(flat)
    return [list(islice(items, size)) for size in sizes]


def ptb_tokenize(sentences: list[str], backend: str = "auto") -> list[str]:
    """Tokenize one stream of sentences like coco-caption (see `ptb_tokenize_streams`).

    >>> ptb_tokenize(["A plane (white) is parked near the terminal.", "It's a big, busy airport!"], backend="python")
    ['a plane -lrb- white -rrb- is parked near the terminal', "it 's a big busy airport"]
    """
    return ptb_tokenize_streams([sentences], backend=backend)[0]
