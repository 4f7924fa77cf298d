"""``r1sft recipe`` (plan and write recipes) and ``r1sft check`` (validate recipes): thin shells over the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from r1sft.errors import R1sftError


def register(subparsers: argparse._SubParsersAction) -> None:
    recipe = subparsers.add_parser(
        "recipe",
        help="write a LLaMA-Factory training (and merge) recipe for a model preset",
        description="Plan and write recipes/<preset>/<method>_sft.yaml (and <method>_merge.yaml for adapters).",
    )
    recipe.add_argument("model", nargs="?", help="model preset (see --list)")
    recipe.add_argument("--method", default="lora", help="lora (default), qlora, dora or full")
    recipe.add_argument("--dataset", help="comma-separated dataset names from data/dataset_info.json "
                        "(default: r1sft_sample, the bundled sample)")
    recipe.add_argument("--gpus", type=int, help="GPUs per node (default 8; tiny presets 0 = CPU)")
    recipe.add_argument("--nodes", type=int, help="number of nodes (default 1)")
    recipe.add_argument("--gpu-mem", type=float, help="memory per GPU in GiB (default 80)")
    recipe.add_argument("--cutoff", type=int, help="cutoff_len in tokens (default 16384, capped at the model's)")
    recipe.add_argument("--global-batch", type=int, help="samples per optimizer step over all GPUs (default 96)")
    recipe.add_argument("--deepspeed", default="auto", help="auto (default), none, z0, z2, z3 or z3_offload")
    recipe.add_argument("--packing", action="store_true",
                        help="neat packing: cutoff-long rows of several samples kept apart by varlen attention; "
                        "2-6x the tokens/s on one GPU, ~global-batch samples per step on average (docs/performance.md)")
    recipe.add_argument("--sequence-parallel", metavar="N|auto",
                        help="split each trace over N GPUs of a node (DeepSpeed Ulysses, under r1sft train); auto: "
                        "the smallest N whose plan fits (docs/recipes.md)")
    recipe.add_argument("--think", choices=("on", "off"), help="Qwen3 only: off trains qwen3 with enable_thinking off (the empty think block in the prompt)")
    recipe.add_argument("--template", help="LLaMA-Factory template (must suit the model family)")
    recipe.add_argument("--model-path", help="local folder or hub id to train instead of the preset's model")
    recipe.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any LLaMA-Factory argument, e.g. --set learning_rate=5e-5 (repeatable)")
    recipe.add_argument("--out-dir", type=Path, help="where <preset>/ folders go (default: recipes/)")
    recipe.add_argument("--data-dir", type=Path, help="folder of the dataset_info.json to train from (default: data/)")
    recipe.add_argument("--print", dest="print_only", action="store_true", help="print the recipe, write nothing")
    recipe.add_argument("--list", action="store_true", help="list the model presets and exit")
    recipe.add_argument("--refresh-committed", action="store_true",
                        help="(re)write every committed recipe listed under headline: in presets.yaml")
    recipe.set_defaults(func=run_recipe)

    check = subparsers.add_parser(
        "check",
        help="check recipes with LLaMA-Factory's own parser and r1sft's rules",
        description="Check training and merge recipes: LLaMA-Factory's argument parser (offline, no model download), "
        "then datasets, template, DeepSpeed file, global batch and train/merge consistency. One line per problem.",
    )
    check.add_argument("recipes", nargs="+", type=Path, metavar="RECIPE")
    check.add_argument("--here", action="store_true",
                       help="also check that this machine shows the GPUs the recipe was planned for (run_sft.sh does)")
    check.set_defaults(func=run_check)


def run_recipe(args: argparse.Namespace) -> int:
    from r1sft.presets import catalogue, presets
    from r1sft.recipe.changes import replaced
    from r1sft.recipe.plan import plan_recipe
    from r1sft.recipe.render import render_recipe, write_files
    from r1sft.recipe.request import RecipeRequest, parse_set

    if args.list:
        for name, preset in presets().items():
            where = preset.hub_id or f"{preset.model_path} (tiny, CPU)"
            print(f"{name:15} {preset.params_billion:7.2f}B  {preset.family.name:9} {where}")
        return 0
    if args.refresh_committed:
        requests = [
            RecipeRequest(model=entry["preset"], method=method, gpus=entry.get("gpus"), out_dir=args.out_dir)
            for entry in catalogue()["headline"]
            for method in entry["methods"]
        ]
    else:
        if not args.model:
            raise R1sftError("name a model preset (r1sft recipe --list shows them)")
        requests = [
            RecipeRequest(
                model=args.model,
                method=args.method,
                datasets=_dataset_names(args.dataset),
                gpus=args.gpus,
                nodes=args.nodes,
                gpu_mem=args.gpu_mem,
                cutoff=args.cutoff,
                global_batch=args.global_batch,
                deepspeed=args.deepspeed,
                think=args.think,
                template=args.template,
                model_path=args.model_path,
                packing=args.packing,
                sequence_parallel=args.sequence_parallel,
                overrides=parse_set(args.set),
                out_dir=args.out_dir,
            )
        ]
    for request in requests:
        plan = plan_recipe(request, data_dir=args.data_dir.resolve() if args.data_dir else None)
        files = render_recipe(plan)
        _check_before_writing(files)
        if args.print_only:
            for text in files.values():
                sys.stdout.write(text)
                sys.stdout.write("\n")
            print(plan.summary(), file=sys.stderr)
            continue
        changes = {path: replaced(path, text) for path, text in files.items()}
        written = write_files(files)
        print(plan.summary())
        for path in written:
            print(f"  wrote {_shown(path)}" + (f", {changes[path]}" if changes[path] else ""))
        print(f"  launch: bash run_sft.sh {_shown(plan.sft_path)}")
        if plan.merge_path:
            print(f"  merge:  {plan.merge_command}")
    return 0


def _dataset_names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    from r1sft.recipe.request import split_names

    names = split_names(value)
    if not names:
        raise R1sftError(f"--dataset {value!r}: expected comma-separated names from data/dataset_info.json")
    return names


def _check_before_writing(files: dict[Path, str]) -> None:
    """Run ``r1sft check`` on the rendered text, so ``r1sft recipe`` never writes a recipe that check rejects.

    An override (``--set``) can contradict the method (``quantization_bit`` on full SFT): the planner passes it on,
    LLaMA-Factory's parser is what refuses it. Problems go to stderr, one a line, and nothing is written.
    """
    from r1sft.recipe.check import check_texts

    recipes = {path: text for path, text in files.items() if path.suffix == ".yaml"}  # not generation_config.json
    problems = check_texts(recipes, shown={path: _shown(path) for path in recipes})
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise R1sftError(f"the rendered recipe fails r1sft check ({count} above); nothing written")


def _shown(path: Path) -> str:
    from r1sft.recipe.request import display

    return display(path).as_posix()


def run_check(args: argparse.Namespace) -> int:
    from r1sft.recipe.check import check_recipes

    problems = check_recipes(args.recipes, here=args.here)
    for line in problems:
        print(line)
    if len(problems) > 1:
        print(f"r1sft check: {len(problems)} problems", file=sys.stderr)
    if problems:
        return 2  # as every r1sft command refuses a user's mistake
    for path in args.recipes:
        print(f"{path}: ok")
    return 0
