"""The ``r1sft`` command: a thin shell over the library.

Each subcommand lives in its own module, which exposes ``register(subparsers)``; the parser it adds sets ``func``,
called with the parsed namespace and returning an exit code. Modules are imported only when listed here, and heavy
imports (torch, LLaMA-Factory) stay inside the ``func`` bodies so ``r1sft --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from r1sft import __version__
from r1sft.errors import R1sftError

SUBCOMMAND_MODULES = (
    "r1sft.tiny",
    "r1sft.data.cli",
    "r1sft.recipe.cli",
    "r1sft.train.cli",
    "r1sft.merge.cli",
    "r1sft.evaluate.cli",
    "r1sft.walkthrough.demo",
    "r1sft.walkthrough.learn",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="r1sft", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"r1sft {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except R1sftError as exc:
        print(f"r1sft {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"r1sft {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `r1sft ... | head`: the reader left; say nothing more, as other CLI tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141


if __name__ == "__main__":
    sys.exit(main())
