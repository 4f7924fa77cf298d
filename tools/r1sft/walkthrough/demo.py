"""``make demo``: the whole r1sft pipeline on a tiny Qwen3 and the bundled sample data, on CPU, in a few minutes.

Every step runs the same command a user would type, and prints it first, so the demo doubles as a walkthrough:
tiny model -> convert the samples -> render the recipe -> train -> merge (verified) -> ask the merged model.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from r1sft.errors import R1sftError
from r1sft.paths import REPO_ROOT
from r1sft.walkthrough.steps import R1SFT, run_step
from r1sft.yamlio import load_yaml

DEMO_PRESET = "tiny-qwen3"
DEMO_METHOD = "lora"
DEMO_QUESTION = "What is 12 + 7? Think step by step."


def run_demo(preset: str = DEMO_PRESET, method: str = DEMO_METHOD, question: str = DEMO_QUESTION) -> dict[str, Path]:
    train_recipe = Path("recipes") / preset / f"{method}_sft.yaml"
    merge_recipe = Path("recipes") / preset / f"{method}_merge.yaml"
    run_step("build the tiny model (cached after the first run)", [*R1SFT, "tiny-model", "--preset", preset])
    run_step("convert the bundled Bespoke-Stratos and Magpie samples", [*R1SFT, "convert", "samples"])
    run_step("render the recipe", [*R1SFT, "recipe", preset, "--method", method])
    # A fresh run each time: the demo shows training, not resuming a finished run.
    run_step("train", ["bash", "run_sft.sh", str(train_recipe), "resume=false", "overwrite_output_dir=true"])
    run_step("merge the adapter and verify the merge", [*R1SFT, "merge", str(merge_recipe)])
    merged = REPO_ROOT / load_yaml(REPO_ROOT / merge_recipe)["export_dir"]
    print(f"\n==> ask the merged model\n$ r1sft generate {shlex.quote(str(merged))} {shlex.quote(question)}", flush=True)
    from r1sft.evaluate.generate import reply

    answer = reply(str(merged), question, max_new_tokens=48)
    print(f"question: {question}\nreply:    {answer!r}\n(a tiny random-weight model after a few dozen steps: the reply "
          "proves the pipeline, not the model; `make learn` trains one that reasons)", flush=True)
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
    parser.add_argument("--preset", default=DEMO_PRESET, help="a tiny preset (default: %(default)s)")
    parser.add_argument("--method", default=DEMO_METHOD, choices=["lora", "dora", "full"])
    parser.add_argument("--question", default=DEMO_QUESTION)
    parser.set_defaults(func=_run)
