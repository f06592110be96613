"""The Java runtime and the two coco-caption jars that pycocoevalcap ships (PTB tokenizer, METEOR 1.5)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

JAVA_INSTALL_HINT = (
    "Install a Java runtime (8 or newer) and put `java` on PATH or set JAVA_HOME, e.g. "
    "`sudo apt-get install -y default-jre-headless` (Debian/Ubuntu), `brew install openjdk` (macOS), "
    "`conda install -c conda-forge openjdk`, or a JRE from https://adoptium.net; check with `java -version`."
)


# JVM flags for these short single-threaded jobs: C1 JIT only and the serial GC roughly halve the jars' run time
# (C2 compilation and G1 threads compete for the CPU); neither changes a token or a score.
FAST_JVM_FLAGS = ["-XX:+IgnoreUnrecognizedVMOptions", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]


class JavaNotFoundError(RuntimeError):
    """No Java runtime: METEOR 1.5 (a Java program) cannot run. BLEU, ROUGE-L and CIDEr-D still can."""


def java_executable() -> str | None:
    """`$JAVA_HOME/bin/java` if it exists, else `java` on PATH, else None."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def java_available() -> bool:
    """Whether METEOR (and the exact PTB tokenizer) can run here."""
    return java_executable() is not None


def require_java(purpose: str) -> str:
    """The java executable, or JavaNotFoundError saying how to install one."""
    java = java_executable()
    if java is None:
        raise JavaNotFoundError(
            f"{purpose} needs a Java runtime and none was found (no `java` on PATH, JAVA_HOME unset). "
            f"{JAVA_INSTALL_HINT} BLEU, ROUGE-L and CIDEr-D work without Java: "
            "caption_metrics(..., metrics=('bleu', 'rouge', 'cider'))."
        )
    return java


def _pycocoevalcap_dir() -> Path:
    try:
        import pycocoevalcap
    except ImportError as error:
        raise ImportError("the coco-caption jars come with pycocoevalcap: `pip install pycocoevalcap`") from error
    return Path(next(iter(pycocoevalcap.__path__))).resolve()  # a namespace package: no __init__.py, no __file__


def ptb_jar() -> Path:
    """Stanford CoreNLP 3.4.1, whose PTBTokenizer coco-caption uses."""
    return _pycocoevalcap_dir() / "tokenizer" / "stanford-corenlp-3.4.1.jar"


def meteor_dir() -> Path:
    """The folder holding meteor-1.5.jar and data/paraphrase-en.gz."""
    return _pycocoevalcap_dir() / "meteor"
