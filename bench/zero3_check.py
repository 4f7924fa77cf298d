"""Train a few steps of a random-initialised model through ``bash run_sft.sh RECIPE`` with ZeRO-3 (or ``--deepspeed``).

The recipe is the one ``r1sft recipe`` plans (``--deepspeed z3``, so ``deepspeed: ds_configs/z3.json``) for the
model folder and data ``bench_train.py`` built; it is written to a scratch folder, never over recipes/. Prints the
exit code and LLaMA-Factory's own throughput numbers. Run ``bench_train.py`` first (it builds the model and data):

    python bench/zero3_check.py --model .cache/bench/gpu/models/qwen2.5-1.5b \
        --data-dir .cache/bench/gpu/data --dataset r1sft_bench_qwen2.5 --steps 6
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="qwen2.5-1.5b")
    parser.add_argument("--method", default="full")
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--gpus", type=int, default=1, help="GPUs of this machine to train on (ZeRO-3 across them)")
    parser.add_argument("--cutoff", type=int, default=16384)
    parser.add_argument("--deepspeed", default="z3", help="ds_configs/ stage to plan with: z0, z2, z3, z3_offload")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "saves" / "bench"))
    parser.add_argument("--check", action="store_true", help="let `r1sft train` run `r1sft check` first")
    args = parser.parse_args(argv)

    from r1sft.recipe import RecipeRequest, plan_recipe, render_recipe, write_files

    scratch = REPO / ".cache" / "bench" / "zero3"
    request = RecipeRequest(
        model=args.preset, method=args.method, datasets=[args.dataset], gpus=args.gpus, deepspeed=args.deepspeed,
        cutoff=args.cutoff, global_batch=2, model_path=str(Path(args.model).resolve()), out_dir=scratch / "recipes",
        overrides={"max_steps": args.steps, "logging_steps": 1, "include_effective_tokens_per_second": True,
                   "output_dir": "saves/bench-zero3/sft", "save_strategy": "no", "report_to": "none"})
    plan = plan_recipe(request, data_dir=Path(args.data_dir).resolve(), build_tiny=False)
    written = write_files(render_recipe(plan))
    recipe = next(p for p in written if p.name.endswith("_sft.yaml"))
    print(plan.summary(), flush=True)
    print(f"zero3_check: bash run_sft.sh {recipe.relative_to(REPO)}", flush=True)
    env = {**os.environ, "R1SFT_NO_RESUME": "1", "R1SFT_VERBOSE": "1"}  # the metrics below are read from the output
    cmd = ["bash", "run_sft.sh", str(recipe.relative_to(REPO))] + ([] if args.check else ["--no-check"])
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=str(REPO), env=env, capture_output=True, text=True)
    wall = time.time() - t0
    log = proc.stdout + proc.stderr
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "zero3_run_sft.log").write_text(log)
    metrics = {}
    for key in ("train_runtime", "train_samples_per_second", "train_steps_per_second", "effective_tokens_per_sec",
                "train_loss", "epoch"):
        found = re.findall(rf"{key}\s*=\s*([0-9.]+)", log)
        if found:
            metrics[key] = float(found[-1])
    result = {"exit": proc.returncode, "wall_seconds": wall, "recipe": str(recipe.relative_to(REPO)),
              "deepspeed": plan.train.get("deepspeed"), "steps": args.steps, **metrics}
    print("zero3_check: " + json.dumps(result), flush=True)
    if proc.returncode:
        print("\n".join(log.splitlines()[-30:]), flush=True)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
