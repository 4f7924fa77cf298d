"""``make learn``: prove that what r1sft trains learns the format and the answers, end to end.

A synthetic task that needs its reasoning (adding three 2-digit numbers column by column, carrying) is written in
Magpie-Reasoning-V2's real schema, then pushed through the same pipeline a user runs: ``r1sft convert`` ->
``r1sft recipe`` -> ``run_sft.sh`` -> ``r1sft eval`` on held-out problems whose number triples
never occur in training. The last line printed is JSON with ``well_formed`` (closes the think block, gives an answer,
stops at the end-of-turn token before the limit) and ``accuracy``.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from r1sft.paths import CACHE_DIR, REPO_ROOT
from r1sft.walkthrough.steps import R1SFT, run_step
from r1sft.yamlio import load_yaml

TASK_NAME = "learn_add3"


def addition_reasoning(a: int, b: int, c: int) -> tuple[str, int]:
    """Column addition of three 2-digit numbers, written the way a careful student would."""
    ones = a % 10 + b % 10 + c % 10
    tens = a // 10 + b // 10 + c // 10 + ones // 10
    total = a + b + c
    reasoning = (f"Ones: {a % 10} + {b % 10} + {c % 10} = {ones}. Write {ones % 10}, carry {ones // 10}.\n"
                 f"Tens: {a // 10} + {b // 10} + {c // 10} + {ones // 10} = {tens}.\n"
                 f"So {a} + {b} + {c} = {total}.")
    return reasoning, total


def magpie_row(index: int, a: int, b: int, c: int) -> dict:
    """One row in Magpie-Reasoning-V2's schema (instruction / response with a <think> block, tag columns)."""
    reasoning, total = addition_reasoning(a, b, c)
    return {
        "uuid": f"learn-add3-{index:06d}",
        "instruction": f"Add {a}, {b} and {c}.",
        "response": f"<think>\n{reasoning}\n</think>\n\nThe sum is \\boxed{{{total}}}.",
        "conversations": [],
        "gen_input_configs": {"temperature": 1.0, "top_p": 1.0},
        "intent": "The user wants to add three numbers.",
        "knowledge": "Column addition with carrying.",
        "difficulty": "easy",
        "input_quality": "good",
        "quality_explanation": "The query is clear and specific.",
        "task_category": "Math",
        "language": "EN",
    }


def write_task(folder: Path, train_size: int, test_size: int, seed: int) -> tuple[Path, Path]:
    """Training rows (Magpie schema) and held-out problems (problem/answer) with disjoint number triples."""
    rng = random.Random(seed)
    triples: list[tuple[int, int, int]] = []
    seen: set[tuple[int, int, int]] = set()
    while len(triples) < train_size + test_size:
        triple = (rng.randint(10, 99), rng.randint(10, 99), rng.randint(10, 99))
        if triple not in seen:
            seen.add(triple)
            triples.append(triple)
    folder.mkdir(parents=True, exist_ok=True)
    train, test = folder / "add3_magpie_train.jsonl", folder / "add3_heldout.jsonl"
    with open(train, "w", encoding="utf-8") as handle:
        for i, (a, b, c) in enumerate(triples[:train_size]):
            handle.write(json.dumps(magpie_row(i, a, b, c)) + "\n")
    with open(test, "w", encoding="utf-8") as handle:
        for a, b, c in triples[train_size:]:
            handle.write(json.dumps({"problem": f"Add {a}, {b} and {c}.", "answer": str(a + b + c)}) + "\n")
    return train, test


def run_learn(args: argparse.Namespace) -> dict:
    work = CACHE_DIR / "learn"
    train_file, heldout = write_task(work, args.train_size, args.test_size, args.seed)
    base = work / ("base-checkpoint-qwen3" if args.base else "base-qwen3")
    # --base: a base checkpoint's tokenizer and generation config (EOS <|endoftext|>, as Qwen3-8B-Base): the recipe
    # must make <|im_end|> the EOS, and the evaluation stops only where the trained model's own config says
    preset, base_flags = ("tiny-qwen3-base", ["--base"]) if args.base else ("tiny-qwen3", [])
    run_step("build a small Qwen3-architecture model (random weights)",
          [*R1SFT, "tiny-model", "--family", "qwen3", "--out", str(base), "--hidden", str(args.hidden),
           "--layers", str(args.layers), "--heads", "4", "--kv-heads", "2", "--intermediate", str(args.hidden * 3),
           "--seed", str(args.seed), *base_flags])
    data_file = work / "data" / f"{TASK_NAME}.jsonl"  # its own dataset_info.json: data/ stays the user's
    data_file.parent.mkdir(parents=True, exist_ok=True)  # a dataset_dir of its own (convert refuses a missing one)
    run_step("convert the Magpie-schema task data", [*R1SFT, "convert", "magpie-reasoning", "--input", str(train_file),
                                                  "--output", str(data_file), "--think", "native"])
    out_dir = work / "recipes"
    # Full SFT: a LoRA adapter on frozen *random* weights barely learns (loss 4.6 vs 0.2 for full SFT in the same 250
    # steps here); real models come pretrained, tiny ones do not. The merge path is covered by `make demo` and tests.
    sets = [f"learning_rate={args.learning_rate}", f"num_train_epochs={args.epochs}", "logging_steps=25",
            "save_strategy=no", "max_steps=-1", f"output_dir={work / 'sft'}"]
    run_step("render the recipe", [*R1SFT, "recipe", preset, "--method", "full", "--model-path", str(base),
                                "--dataset", TASK_NAME, "--data-dir", str(data_file.parent), "--global-batch", str(args.batch), "--cutoff", "256",
                                "--out-dir", str(out_dir), *[item for kv in sets for item in ("--set", kv)]])
    train_recipe = out_dir / preset / "full_sft.yaml"
    run_step("train", ["bash", "run_sft.sh", str(train_recipe), "resume=false", "overwrite_output_dir=true"])
    trained = REPO_ROOT / load_yaml(train_recipe)["output_dir"]
    report = work / "eval.json"
    run_step("evaluate on held-out problems", [*R1SFT, "eval", str(trained), "--data", str(heldout), "--temperature", "0",
                                            "--max-new-tokens", "160", "--batch-size", "50", "--out", str(report),
                                            *(["--stop-tokens", "generation-config"] if args.base else [])])
    summary = json.loads(report.read_text())
    result = {"well_formed": summary["well_formed"], "accuracy": summary["accuracy"],
              "heldout": args.test_size, "train_rows": args.train_size, "model": str(trained)}
    print(json.dumps(result))
    return result


def _run(args: argparse.Namespace) -> int:
    result = run_learn(args)
    return 0 if result["well_formed"] >= 0.95 and result["accuracy"] >= 0.8 else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("learn", help="train a small model on a synthetic reasoning task and score it",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=8000)
    parser.add_argument("--test-size", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1.5e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base", action="store_true",
                        help="start from a base-checkpoint stand-in (EOS <|endoftext|>) and stop generation only where "
                             "the trained model's generation_config.json says")
    parser.set_defaults(func=_run)
