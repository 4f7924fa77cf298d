"""``r1sft train`` (what ``run_sft.sh`` runs): the command-line face of ``r1sft.train.launch``."""

from __future__ import annotations

import argparse

from r1sft.train import launch


def _run(args: argparse.Namespace) -> int:
    return launch.run_training(args.recipe, args.overrides, resume=not args.no_resume, check=not args.no_check)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="check a recipe and launch llamafactory-cli train (run_sft.sh)",
                                   description=launch.__doc__.splitlines()[0])
    parser.add_argument("recipe", help="recipes/<preset>/<method>_sft.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="recipe values to override")
    parser.add_argument("--no-resume", action="store_true", help="start over even if output_dir has checkpoints")
    parser.add_argument("--no-check", action="store_true", help="skip `r1sft check`")
    parser.set_defaults(func=_run)
