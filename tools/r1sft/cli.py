"""r1sft: fine-tune Qwen2.5, Qwen3 and Llama-3.2 on R1-style reasoning data with LLaMA-Factory 0.9.5.

The command is a thin shell over the library. Each subcommand lives in its own module, which exposes ``register(subparsers)``; the parser it adds sets ``func``,
called with the parsed namespace and returning an exit code. Modules are imported only when listed here, and heavy
imports (torch, LLaMA-Factory) stay inside the ``func`` bodies so ``r1sft --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
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


EPILOG = """the path from data to a model:
  r1sft convert SOURCE --input FILE --output data/NAME.jsonl   clean and register a dataset
  r1sft recipe MODEL --method lora --dataset NAME --gpus 8     plan recipes/MODEL/lora_sft.yaml (+ _merge.yaml)
  r1sft check RECIPE                                           what LLaMA-Factory and r1sft would refuse
  r1sft train RECIPE [key=value ...]                           train it (what bash run_sft.sh runs)
  r1sft merge recipes/MODEL/lora_merge.yaml                    merge the adapter and verify the merge
  r1sft eval MODEL_DIR --data problems.jsonl                   accuracy and format compliance
`make demo` runs all of it on a tiny model on CPU; `r1sft COMMAND --help` says more."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """An option's default shown when it has one worth saying and its help names none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


class TopHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """``r1sft --help``: the epilog's table as written."""


def plain(text: str | None) -> str | None:
    """Docstring text for a terminal: ``code`` -> code (reStructuredText's literals read as noise in --help)."""
    return re.sub(r"``([^`]+)``", r"\1", text) if text else text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="r1sft", description=__doc__.splitlines()[0], epilog=EPILOG,
                                     formatter_class=TopHelpFormatter)
    parser.add_argument("--version", action="version", version=f"r1sft {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    for sub in subparsers.choices.values():
        sub.formatter_class = HelpFormatter
        sub.description = plain(sub.description)
    for choice in subparsers._choices_actions:
        choice.help = plain(choice.help)
    return parser


def quiet_deepspeed() -> None:
    """Drop DeepSpeed's "Setting accelerator to CPU" warning, which it prints whenever anything imports it on a
    machine without a GPU (transformers' save_pretrained does: tiny models, merges). Only that message: the
    logger's other records pass; training processes (llamafactory-cli) are not this process and keep it."""
    logging.getLogger("DeepSpeed").addFilter(lambda record: "Setting accelerator to CPU" not in record.getMessage())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_deepspeed()
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
