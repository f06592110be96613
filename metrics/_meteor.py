"""METEOR 1.5 through its jar, as pycocoevalcap's `Meteor` runs it.

pycocoevalcap sends one `SCORE ||| refs ||| hyp` line per caption and waits for each answer, then one `EVAL` line
with every caption's statistics. Here the same SCORE lines (identical lines only once) stream to one or a few JVMs
from writer threads while the caller computes the other metrics (a caption's statistics do not depend on the
others), and the corpus score of each subset comes from one `EVAL` line holding that subset's summed statistics:
exactly the sums the jar's EVAL builds itself (`MeteorStats.addStats`, which leaves out the chunk of a caption
matched entirely in one chunk), so the jar's own arithmetic (`MeteorScorer.computeMetrics`) yields the same score.
The jar loads a paraphrase table cut down to the words of these captions (see `_paraphrase.py`); that is what
makes it start in ~1-2 s instead of ~10 s.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import tempfile
import threading
from itertools import chain
from pathlib import Path

import numpy as np

from ._java import FAST_JVM_FLAGS, meteor_dir, require_java
from ._paraphrase import candidate_words, load_index

logger = logging.getLogger(__name__)

# MeteorStats.toString: test/ref length, test/ref function words, then per stage (exact, stem, synonym,
# paraphrase) test/ref content matches and test/ref function matches, then chunks, test/ref word matches.
_N_STATS = 23
_STAGE_TEST_MATCHES, _STAGE_REF_MATCHES = [4, 6, 8, 10, 12, 14, 16, 18], [5, 7, 9, 11, 13, 15, 17, 19]
_CHUNKS = 20


def score_line(hyp: str, references: list[str]) -> str:
    """The request pycocoevalcap's Meteor._stat writes for one caption (it cleans only the hypothesis)."""
    return " ||| ".join(("SCORE", " ||| ".join(references), hyp.replace("|||", "").replace("  ", " ")))


def _summed_stats(stats: np.ndarray) -> np.ndarray:
    """(23,) the aggregate MeteorStats.addStats builds from (K, 23) per-caption statistics."""
    one_chunk = (
        (stats[:, _STAGE_TEST_MATCHES].sum(axis=1) == stats[:, 0])
        & (stats[:, _STAGE_REF_MATCHES].sum(axis=1) == stats[:, 1])
        & (stats[:, _CHUNKS] == 1)
    )
    total = stats.sum(axis=0)
    total[_CHUNKS] = stats[~one_chunk, _CHUNKS].sum()
    return total


class _MeteorProcess:
    """One METEOR 1.5 JVM answering `lines` (SCORE requests) into `stats` (len(lines), 23) from two threads."""

    def __init__(self, command: list[str], lines: list[str], stats: np.ndarray):
        self.stats = stats
        self.error: BaseException | None = None
        self._stderr = tempfile.TemporaryFile()  # the JVM's messages, read back on failure
        self.process = subprocess.Popen(
            command, cwd=meteor_dir(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr
        )
        request = "".join(line + "\n" for line in lines).encode("utf-8")
        self._writer = threading.Thread(target=self._write, args=(request,), daemon=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._writer.start()
        self._reader.start()

    def _write(self, request: bytes) -> None:
        try:
            self.process.stdin.write(request)
            self.process.stdin.flush()
        except (OSError, ValueError) as error:  # the JVM died (or close() ran); _read reports it with its stderr
            self.error = self.error or error

    def _read(self) -> None:
        try:
            for row in range(len(self.stats)):
                line = self.process.stdout.readline().decode("utf-8").strip()
                values = line.split()
                if len(values) != _N_STATS:
                    raise RuntimeError(f"METEOR answered {line!r} to caption statistics request {row}")
                self.stats[row] = [float(value) for value in values]
        except (RuntimeError, ValueError, OSError) as error:  # ValueError also when close() closed the pipe
            self.error = error

    def join(self) -> None:
        """Wait for every answer; RuntimeError with the JVM's messages if it failed."""
        self._writer.join()
        self._reader.join()
        if self.error is not None:
            raise self.failure(self.error)

    def evaluate(self, stats: np.ndarray) -> float:
        """The jar's corpus score of per-caption statistics (K, 23), sent as one summed EVAL line."""
        try:
            summed = _summed_stats(stats)  # word counts: exact sums
            self.process.stdin.write(("EVAL ||| " + " ".join(map(repr, summed.tolist())) + "\n").encode())
            self.process.stdin.flush()
            # the jar answers with the score of that one line, then the (equal) aggregate of the request
            answers = [self.process.stdout.readline().decode("utf-8").strip() for _ in range(2)]
            return float(answers[0])
        except (OSError, ValueError) as error:
            raise self.failure(error) from error

    def failure(self, error: BaseException) -> RuntimeError:
        self._stderr.seek(0)
        detail = self._stderr.read().decode(errors="replace")[-2000:]
        return RuntimeError(f"METEOR 1.5 failed: {error}. Java said: {detail or '(nothing)'}")

    def close(self) -> None:
        self.process.kill()  # first: a writer blocked on a full pipe then fails instead of waiting forever
        self.process.wait()
        self._writer.join()
        self._reader.join()
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):  # the broken pipe's last flush
                stream.close()
        self._stderr.close()


class MeteorJob:
    """Scores caption sets with the METEOR 1.5 jar in the background; `scores()` collects the corpus scores.

    sets: {name: (hyps, refs)} of tokenized captions (e.g. the whole set and each group). The distinct requests
    are shared among `workers` JVMs (default: one per CPU core, at most 4, at least 500 requests each). Use as a
    context manager so that the JVMs are always stopped.
    """

    def __init__(self, sets: dict, workers: int | None = None):
        java = require_java("METEOR 1.5")
        position: dict[str, int] = {}  # each distinct request once, for all sets
        self._rows = {}  # name -> (N,) row of each caption's statistics
        for name, (hyps, refs) in sets.items():
            lines = [score_line(hyp, references) for hyp, references in zip(hyps, refs)]
            self._rows[name] = np.array([position.setdefault(line, len(position)) for line in lines])
        unique = list(position)
        self._stats = np.zeros((len(unique), _N_STATS))
        self._workdir = tempfile.TemporaryDirectory(prefix="meteor-")
        # pycocoevalcap's command, plus a fixed number format for the EVAL lines and the trimmed paraphrase table
        command = [java, "-Xmx2G", *FAST_JVM_FLAGS, "-Duser.language=en", "-Duser.country=US"]
        command += ["-jar", "meteor-1.5.jar"]
        sentences = [sentence for hyps, refs in sets.values() for sentence in chain(hyps, *refs)]
        command += ["-", "-", "-stdio", "-l", "en", "-norm", *self._paraphrase_option(sentences)]
        if workers is None:
            workers = max(1, min(4, os.cpu_count() or 1, len(unique) // 500))  # ~1.5 s to start one: not for few
        bounds = np.linspace(0, len(unique), workers + 1).astype(int).tolist()
        self._processes: list[_MeteorProcess] = []
        for start, stop in zip(bounds, bounds[1:]):  # contiguous slices: views of self._stats
            self._processes.append(_MeteorProcess(command, unique[start:stop], self._stats[start:stop]))

    def _paraphrase_option(self, sentences: list[str]) -> list[str]:
        table = meteor_dir() / "data" / "paraphrase-en.gz"
        try:
            index = load_index(table)
        except (OSError, ValueError, MemoryError) as error:  # e.g. a read-only cache: the full table still works
            logger.warning("METEOR uses its full paraphrase table (~10 s to load): no index (%s)", error)
            return []
        subset = Path(self._workdir.name) / "paraphrase-subset.gz"
        kept = index.write_subset(candidate_words(sentences), subset)
        logger.debug("METEOR paraphrase table cut to %d entries", kept)
        return ["-a", str(subset)]

    def scores(self) -> dict:
        """{name: corpus METEOR} of each set."""
        for process in self._processes:
            process.join()
        return {name: self._processes[0].evaluate(self._stats[rows]) for name, rows in self._rows.items()}

    def close(self) -> None:
        """Stop the JVMs (killed, as pycocoevalcap stops its own) and remove the temporary files."""
        for process in self._processes:
            process.close()
        self._workdir.cleanup()

    def __enter__(self) -> MeteorJob:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
