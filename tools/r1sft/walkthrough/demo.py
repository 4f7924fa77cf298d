"""``make demo``: the whole r1sft pipeline on a tiny Qwen3 and the bundled sample data, on CPU, in about a minute.

Every step runs the same command a user would type, and prints it first, so the demo doubles as a walkthrough:
tiny model -> convert the samples -> render the recipe -> train -> merge (verified) -> ask the merged model. Each
step's console is kept to what it says to a person (its whole output goes to .cache/demo/); the merged model,
trained on 8 samples until it knows them, answers one of their questions in the trained format.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path

from r1sft.errors import R1sftError
from r1sft.paths import CACHE_DIR, DATA_DIR, REPO_ROOT
from r1sft.walkthrough.steps import R1SFT, readable, run_step
from r1sft.yamlio import load_yaml

DEMO_PRESET = "tiny-qwen3"
DEMO_METHOD = "lora"
# A random-weight model learns nothing general in a minute; it can learn a few samples by heart. Its logits are
# its frozen random embeddings (tied, ~0.16 long): LoRA alone cannot make them confident, so they train too.
DEMO_SETS = ("learning_rate=1e-2", "max_steps=150", "max_samples=8", "additional_target=embed_tokens,lm_head")
FORMAT = re.compile(r"^\s*<think>.*?</think>\s*\S", re.DOTALL)
LOGS = CACHE_DIR / "demo"


def well_formed(reply: str) -> bool:
    """A closed think block followed by an answer: the trained format."""
    return bool(FORMAT.match(reply))


def first_question(dataset: Path = DATA_DIR / "r1sft_sample.jsonl") -> str:
    """The first training sample's question (what the demo asks the merged model)."""
    with dataset.open(encoding="utf-8") as handle:
        row = json.loads(handle.readline())
    return next(turn["value"] for turn in row["conversations"] if turn["from"] == "human")


def _recipe_lines(line: str) -> bool:
    return line.startswith(("  wrote ", "  memory ")) or not line.startswith(" ")


def _ask(merged: Path, question: str) -> str:
    from transformers.utils import logging as hf_logging

    from r1sft.evaluate.generate import reply

    # the merged lm_head trained apart from the embeddings is saved untied, which transformers remarks on at load
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    return reply(str(merged), question, max_new_tokens=160)


def run_demo(preset: str = DEMO_PRESET, method: str = DEMO_METHOD, question: str | None = None) -> dict[str, Path]:
    train_recipe = Path("recipes") / preset / f"{method}_sft.yaml"
    merge_recipe = Path("recipes") / preset / f"{method}_merge.yaml"
    run_step("build the tiny model (cached after the first run)", [*R1SFT, "tiny-model", "--preset", preset],
             show=readable, log=LOGS / "1-tiny-model.log")
    run_step("convert the bundled Bespoke-Stratos and Magpie samples", [*R1SFT, "convert", "samples"],
             show=readable, log=LOGS / "2-convert.log")
    sets = [item for kv in DEMO_SETS for item in ("--set", kv)]
    run_step("render the recipe (8 samples, learned by heart; the recipe's comments say why for each value)",
             [*R1SFT, "recipe", preset, "--method", method, *sets], show=_recipe_lines, log=LOGS / "3-recipe.log")
    # A fresh run each time: the demo shows training, not resuming a finished run.
    run_step("train", ["bash", "run_sft.sh", str(train_recipe), "resume=false", "overwrite_output_dir=true"])
    run_step("merge the adapter and verify the merge", [*R1SFT, "merge", str(merge_recipe)],
             show=lambda line: line.startswith("r1sft merge:"), log=LOGS / "5-merge.log")
    merged = REPO_ROOT / load_yaml(REPO_ROOT / merge_recipe)["export_dir"]
    question = question or first_question()
    print(f"\n==> ask the merged model one of the questions it trained on\n"
          f"$ {shlex.join(['r1sft', 'generate', str(merged.relative_to(REPO_ROOT)), question])}", flush=True)
    answer = _ask(merged, question)
    verdict = "a closed think block, then an answer" if well_formed(answer) else "NOT in the trained format"
    print(f"reply:    {answer!r}\nformat:   {verdict} (`make learn` trains a model that reasons on new problems)",
          flush=True)
    adapter = REPO_ROOT / load_yaml(REPO_ROOT / train_recipe)["output_dir"]
    paths = {"adapter": adapter, "loss plot": adapter / "training_loss.png", "merged model": merged}
    print("\n==> done")
    for name, path in paths.items():
        state = "" if path.exists() else "  (missing!)"
        print(f"{name:>13}: {path}{state}")
    missing = [name for name, path in paths.items() if not path.exists()]
    if missing:
        raise R1sftError(f"demo finished but these outputs are missing: {', '.join(missing)}")
    return paths


def _run(args: argparse.Namespace) -> int:
    run_demo(args.preset, args.method, args.question)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the whole pipeline on a tiny model (CPU, minutes)",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=DEMO_PRESET, help="a tiny preset")
    parser.add_argument("--method", default=DEMO_METHOD, choices=["lora", "dora", "full"])
    parser.add_argument("--question", help="what to ask the merged model (default: the first training sample's)")
    parser.set_defaults(func=_run)
