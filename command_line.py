"""The one command-line parser of every script: `HfArgumentParser` over a dataclass, plus positional arguments.

`parse_command_line(Arguments, argv, positional=("model_dir", "output_dir"), variadic="images")` maps the leading
words that are not options to the named fields in order, and every further word (before or after the options) to
the list field `variadic` (`variadic_missing`: the error when it stays empty); `--name value` works for all of them
too. A `__post_init__` ValueError exits like an
argparse error, with its message.
"""

import sys
from typing import TypeVar

from transformers import HfArgumentParser

Arguments = TypeVar("Arguments")


def _leading_words(argv: list[str]) -> int:
    count = 0
    while count < len(argv) and not argv[count].startswith("-"):
        count += 1
    return count


def parse_command_line(
    arguments: type[Arguments],
    argv: list[str] | None = None,
    *,
    positional: tuple[str, ...] = (),
    variadic: str | None = None,
    variadic_missing: str | None = None,
    usage: str | None = None,
    description: str | None = None,
) -> Arguments:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(arguments, usage=usage, description=description)
    words = _leading_words(argv)
    named = [f"--{name}={value}" for name, value in zip(positional, argv[: min(words, len(positional))])]
    extra = argv[len(named) : words]
    if extra and variadic is None:
        parser.error(f"unexpected argument {extra[0]!r}: {usage or 'see --help'}")
    argv = [*named, *([f"--{variadic}", *extra] if extra else []), *argv[words:]]
    try:
        args, remaining = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    except ValueError as error:  # __post_init__'s checks
        parser.error(str(error))
    unknown = [item for item in remaining if item.startswith("-") or variadic is None]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if variadic is not None:
        setattr(args, variadic, [*(getattr(args, variadic) or []), *remaining])  # words after the options
        if variadic_missing and not getattr(args, variadic):
            parser.error(variadic_missing)
    return args
