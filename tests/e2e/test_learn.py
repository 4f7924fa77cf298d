"""`r1sft eval` on models r1sft trained: a learned tiny model and a merged LoRA model, checked by an independent count."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from r1sft.paths import CACHE_DIR
from r1sft.walkthrough.learn import write_task
from tests.conftest import VENV_BIN, run_cli

pytestmark = pytest.mark.slow
R1SFT = str(VENV_BIN / "r1sft")
BOXED = re.compile(r"\\boxed\{(\d+)\}")


def independent_accuracy(samples_file, heldout_file) -> float:
    """Count correct answers without r1sft's scorer: the last \\boxed{N} after </think> equals the gold sum."""
    rows = [json.loads(line) for line in heldout_file.read_text().splitlines()]
    gold = {row["problem"]: int(row["answer"]) for row in rows}
    correct = total = 0
    for line in samples_file.read_text().splitlines():
        record = json.loads(line)
        answer_part = record["generation"].split("</think>")[-1]
        found = BOXED.findall(answer_part)
        total += 1
        correct += bool(found) and int(found[-1]) == gold[record["problem"]]
    return correct / total


def test_a_base_checkpoint_learns_to_stop_and_eval_matches_an_independent_count():
    """`make learn` from a base-checkpoint stand-in (EOS <|endoftext|>, as Qwen3-8B-Base): the base preset's recipe
    makes <|im_end|> the trained model's EOS, so it stops on its own: generation stops only at the EOS ids of its
    generation_config.json, as transformers' generate does."""
    proc = run_cli(R1SFT, "learn", "--base", "--train-size", "6000", "--test-size", "60", "--epochs", "2",
                   check=False, timeout=1800)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    report = json.loads((CACHE_DIR / "learn" / "eval.json").read_text())
    samples = CACHE_DIR / "learn" / report["samples_file"]
    assert result["accuracy"] == report["accuracy"]
    assert report["accuracy"] == pytest.approx(independent_accuracy(samples, CACHE_DIR / "learn" / "add3_heldout.jsonl"))
    assert report["accuracy"] > 0.1, "two thirds of the usual training already solve held-out problems"
    assert result["well_formed"] >= 0.95
    model, base = Path(result["model"]), CACHE_DIR / "learn" / "base-checkpoint-qwen3"
    eos = json.loads((model / "generation_config.json").read_text())["eos_token_id"]
    im_end, endoftext = (json.loads((base / "tokenizer.json").read_text())["added_tokens"][i]["id"] for i in (2, 0))
    assert json.loads((base / "generation_config.json").read_text())["eos_token_id"] == endoftext  # the base's
    assert report["settings"]["own_stop"] and report["settings"]["stop_token_ids"] == sorted({im_end, endoftext})
    assert eos[0] == im_end and set(eos) == {im_end, endoftext}


def test_eval_on_a_merged_lora_model_matches_an_independent_count(tmp_path):
    _, heldout = write_task(tmp_path, train_size=10, test_size=12, seed=1)
    run_cli(R1SFT, "convert", "samples")
    run_cli(R1SFT, "recipe", "tiny-qwen3", "--method", "lora", "--out-dir", str(tmp_path / "rec"),
            "--set", f"output_dir={tmp_path / 'out'}", "--set", "learning_rate=0.01")
    merge = tmp_path / "rec" / "tiny-qwen3" / "lora_merge.yaml"
    config = yaml.safe_load(merge.read_text())
    config["export_dir"] = str(tmp_path / "merged")
    merge.write_text(yaml.safe_dump(config))
    run_cli("bash", "run_sft.sh", str(tmp_path / "rec" / "tiny-qwen3" / "lora_sft.yaml"), "max_steps=4")
    run_cli(R1SFT, "merge", str(merge))
    out = tmp_path / "report.json"
    run_cli(R1SFT, "eval", str(tmp_path / "merged"), "--data", str(heldout), "--n", "2", "--max-new-tokens", "24",
            "--out", str(out))
    report = json.loads(out.read_text())
    samples = tmp_path / report["samples_file"]
    assert len(samples.read_text().splitlines()) == 24  # 12 problems x 2 samples
    assert report["accuracy"] == pytest.approx(independent_accuracy(samples, heldout))
