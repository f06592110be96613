"""METEOR 1.5's English paraphrase table, cut down to the entries a given set of sentences can use.

Loading the full table (5.3 M entries, 272 MB of text) takes the METEOR jar about 10 s, more than scoring a test
split. A paraphrase entry can only match when every word of both of its phrases occurs in the text being scored
(after METEOR's own normalisation), so the jar gets a table holding just those entries (`-a`), in their original
order, and aligns every sentence exactly as it does with the full table.

The table is parsed once into word-id arrays (`numpy` files, about 130 MB, built in 10-20 s on first use) cached
under `$TSN_PALIGEMMA_CACHE` (default `~/.cache/tsn_paligemma`); each call then selects its entries in < 1 s.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

_FORMAT_VERSION = "3"

# The letters and digits of METEOR 1.5's Normalizer (edu.cmu.meteor.util.Normalizer.alnum): it only ever splits a
# token next to a character outside this class, so every normalised word is a run of whole "pieces" of a token.
_JAVA_ALNUM = (
    "0-9A-Za-z\u0160\u017d\u0161\u017e\u0178\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u017e"
    "\u0400-\u04ff\u0500-\u0527\ua640-\ua66e\ua67e-\ua697\u1d00-\u1d7f"
)
_PIECES = re.compile(f"[{_JAVA_ALNUM}]+|.", re.DOTALL)
_HAS_ALNUM = re.compile(f"[{_JAVA_ALNUM}]".encode())
_MAX_WORD = 100  # characters; the longest word of METEOR 1.5's English table has 24 bytes
# Character rewrites the Normalizer applies before splitting (quotes and dashes; words of punctuation only, such as
# the '"' it makes of "''", are always kept).
_CHAR_VARIANTS = str.maketrans({"`": "'", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-"})


def cache_root() -> Path:
    """Folder for this project's caches: `$TSN_PALIGEMMA_CACHE`, else `$XDG_CACHE_HOME/tsn_paligemma`."""
    if os.environ.get("TSN_PALIGEMMA_CACHE"):
        return Path(os.environ["TSN_PALIGEMMA_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "tsn_paligemma"


def candidate_words(sentences: Iterable[str]) -> set[bytes]:
    """Every word METEOR's normaliser could make of these sentences (a superset), UTF-8 encoded.

    >>> sorted(candidate_words(["a tree-lined road"]))[:6]
    [b'-', b'-lined', b'a', b'lined', b'road', b'tree']
    """
    words: set[bytes] = set()
    for token in {token for sentence in sentences for token in sentence.split()}:
        for variant in {token, token.lower(), token.translate(_CHAR_VARIANTS).lower()}:
            pieces = _PIECES.findall(variant)
            for start in range(len(pieces)):
                word = ""
                for piece in pieces[start:]:
                    word += piece
                    if len(word) > _MAX_WORD:
                        break
                    words.add(word.encode("utf-8"))
    return words


class ParaphraseIndex:
    """The paraphrase table as arrays: `entries` (E, 2) phrase ids, phrases as word ids in CSR form."""

    def __init__(self, folder: Path):
        self.words = np.load(folder / "words.npy").tolist()  # (W,) bytes
        self.word_has_alnum = np.load(folder / "word_has_alnum.npy")  # (W,) bool
        self.phrase_offsets = np.load(folder / "phrase_offsets.npy", mmap_mode="r")  # (P + 1,) into phrase_words
        self.phrase_words = np.load(folder / "phrase_words.npy", mmap_mode="r")  # (sum of phrase lengths,) word ids
        self.text_offsets = np.load(folder / "text_offsets.npy", mmap_mode="r")  # (P + 1,) into texts
        self.texts = (folder / "texts.bin").read_bytes()  # every phrase's text, concatenated
        self.entries = np.load(folder / "entries.npy", mmap_mode="r")  # (E, 2) (phrase, paraphrase) ids
        self.word_ids = {word: index for index, word in enumerate(self.words)}

    def write_subset(self, vocabulary: set[bytes], path: Path) -> int:
        """Write the entries whose words all are in `vocabulary` (or punctuation) as a gzip table; return how many."""
        allowed = ~self.word_has_alnum  # (W,) words without letters or digits are always kept: few, and safe
        allowed[[self.word_ids[word] for word in vocabulary if word in self.word_ids]] = True
        word_ok = allowed[self.phrase_words]  # (sum of phrase lengths,)
        phrase_ok = np.logical_and.reduceat(word_ok, self.phrase_offsets[:-1])  # (P,); every phrase has >= 1 word
        kept = self.entries[phrase_ok[self.entries[:, 0]] & phrase_ok[self.entries[:, 1]]]  # (K, 2)
        phrases = np.unique(kept)  # (U,)
        slices = map(slice, self.text_offsets[phrases].tolist(), self.text_offsets[phrases + 1].tolist())
        text = dict(zip(phrases.tolist(), map(self.texts.__getitem__, slices)))
        # METEOR 1.5 reads and ignores each entry's probability line (ParaphraseTransducer), so "1" stands in for it.
        body = b"".join(b"1\n%s\n%s\n" % (text[a], text[b]) for a, b in kept.tolist())
        with gzip.open(path, "wb", compresslevel=1) as handle:
            handle.write(body)
        return len(kept)


def _table_key(table: Path) -> str:
    stat = table.stat()
    digest = hashlib.sha256(f"{_FORMAT_VERSION}|{table.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _dense_ids(items: list[bytes]) -> tuple[list[bytes], np.ndarray]:
    """(distinct items in order of appearance, (len(items),) id of each item), hashing each item once."""
    first_seen: dict[bytes, int] = {}
    sparse = np.fromiter(map(first_seen.setdefault, items, itertools.count()), np.int64, len(items))
    return list(first_seen), np.unique(sparse, return_inverse=True)[1]


def _build(table: Path, folder: Path) -> None:
    logger.warning("Indexing METEOR's paraphrase table once (10-20 s): %s -> %s", table, folder)
    with gzip.open(table, "rb") as handle:
        lines = handle.read().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if len(lines) % 3:
        raise ValueError(f"{table} is not a METEOR paraphrase table: {len(lines)} lines is not a multiple of 3")
    entry_count = len(lines) // 3
    phrases, phrase_ids = _dense_ids(lines[1::3] + lines[2::3])  # each entry: probability, phrase, paraphrase
    del lines
    entries = phrase_ids.reshape(2, entry_count).T.astype(np.int32)  # (E, 2)
    texts = b"".join(phrases)
    text_offsets = np.zeros(len(phrases) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, phrases), np.int64, len(phrases)), out=text_offsets[1:])
    # Words are separated by single spaces (checked: no tabs, no double spaces), as METEOR's tokenizer reads them.
    spaces = np.frombuffer(texts, dtype=np.uint8) == ord(" ")
    offsets = np.zeros(len(phrases) + 1, dtype=np.int64)
    np.cumsum(np.add.reduceat(spaces, text_offsets[:-1], dtype=np.int64) + 1, out=offsets[1:])
    words, phrase_words = _dense_ids(b" ".join(phrases).split(b" "))
    del phrases
    folder.mkdir(parents=True)
    np.save(folder / "words.npy", np.array(words, dtype=object).astype(bytes))
    np.save(folder / "word_has_alnum.npy", np.array([bool(_HAS_ALNUM.search(word)) for word in words]))
    np.save(folder / "phrase_offsets.npy", offsets.astype(np.min_scalar_type(offsets[-1])))
    np.save(folder / "phrase_words.npy", phrase_words.astype(np.min_scalar_type(len(words))))
    np.save(folder / "entries.npy", entries)
    np.save(folder / "text_offsets.npy", text_offsets.astype(np.min_scalar_type(text_offsets[-1])))
    (folder / "texts.bin").write_bytes(texts)


@lru_cache(maxsize=2)
def load_index(table: Path) -> ParaphraseIndex:
    """The cached index of `table`, built on first use (atomically, so concurrent builders cannot corrupt it)."""
    folder = cache_root() / f"meteor-paraphrase-{_table_key(table)}"
    if not (folder / "entries.npy").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
        try:
            _build(table, staging / "index")
            try:
                (staging / "index").rename(folder)
            except OSError:  # another process finished first; its index is identical
                if not (folder / "entries.npy").exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return ParaphraseIndex(folder)
