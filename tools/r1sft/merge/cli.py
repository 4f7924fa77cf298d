"""``r1sft merge`` and ``r1sft verify-merge``: the command-line face of ``r1sft.merge``."""

from __future__ import annotations

import argparse

from r1sft.merge.export import DEFAULT_TOLERANCE, export, resolve, verify_merge
from r1sft.yamlio import load_yaml


def _merge(args: argparse.Namespace) -> int:
    export_dir = export(args.recipe)
    config = load_yaml(args.recipe)
    from r1sft.merge.parity import align_exported

    for note in align_exported(export_dir, config):
        print(f"r1sft merge: {note}")
    if not args.no_verify:
        diff = verify_merge(resolve(config["model_name_or_path"]), resolve(config["adapter_name_or_path"]),
                            str(export_dir))
        print(f"r1sft merge: verified {export_dir}: max |logit difference| vs base + adapter = {diff:.2e}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    diff = verify_merge(args.base, args.adapter, args.merged, args.tolerance)
    print(f"max |logit difference| = {diff:.2e} (< {args.tolerance:g}): merge verified")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    merge = subparsers.add_parser(
        "merge", help="llamafactory-cli export a merge recipe, then verify the merge",
        description="Merge a trained LoRA adapter into its base model with llamafactory-cli export, then prove the "
                    "merge: the merged model's logits equal base + adapter on a probe conversation, and its chat "
                    "template renders prompts as LLaMA-Factory trained on them.")
    merge.add_argument("recipe", help="recipes/<preset>/<method>_merge.yaml")
    merge.add_argument("--no-verify", action="store_true", help="skip the logit comparison")
    merge.set_defaults(func=_merge)
    verify = subparsers.add_parser("verify-merge", help="compare a merged model's logits with base + adapter",
                                   description="Compare a merged model's logits with base + adapter (fp32, CPU).")
    verify.add_argument("--base", required=True)
    verify.add_argument("--adapter", required=True)
    verify.add_argument("--merged", required=True)
    verify.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    verify.set_defaults(func=_verify)
