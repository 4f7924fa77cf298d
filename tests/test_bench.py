"""`make bench` plumbing on the CPU: synthetic lengths in tokens, the FLOP count, and a smoke run of one arm."""

from __future__ import annotations

import json
import sys

import pytest

from r1sft.paths import REPO_ROOT
from tests.conftest import run_cli

sys.path.insert(0, str(REPO_ROOT / "bench"))

from benchlib.measure import flops  # noqa: E402
from benchlib.synth import make_dataset  # noqa: E402


def test_synthetic_lengths_are_tokens(tmp_path, tiny_model):
    from transformers import AutoTokenizer

    data = make_dataset("qwen2.5", tmp_path, samples=12, median=600, sigma=0.6, max_tokens=1500, min_tokens=100,
                        seed=1, longest_at=3)
    tok = AutoTokenizer.from_pretrained(tiny_model("tiny-qwen2.5"))
    rows = [json.loads(line) for line in (tmp_path / "r1sft_bench_qwen2.5.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and all(row["system"] == "" for row in rows)
    for row, recorded in zip(rows, data["lengths"], strict=True):
        prompt, answer = (turn["value"] for turn in row["conversations"])
        assert answer.startswith("<think>\n") and "\n</think>\n\n" in answer
        counted = len(tok(prompt + answer, add_special_tokens=False)["input_ids"])
        assert abs(counted - recorded) <= 0.03 * recorded + 30  # tags and the boxed answer come on top
    assert data["lengths"][3] == max(data["lengths"])
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert info["r1sft_bench_qwen2.5"]["columns"] == {"messages": "conversations", "system": "system"}


def test_flops_per_token_qwen25_15b():
    from r1sft.presets import get_preset

    shape = get_preset("qwen2.5-1.5b").shape
    per_token = flops(shape, "full", tokens=5100, sumsq=5100 * 5100) / 5100
    assert 11.8e9 < per_token < 12.1e9  # 6N ~ 9.3 GFLOP + 12*L*H*d*T ~ 2.6 GFLOP per token at T = 5.1k
    lora = flops(shape, "lora", tokens=1, sumsq=0)
    assert lora == 4 * shape.total_params


@pytest.mark.slow
def test_bench_smoke_cpu(tmp_path):
    run_cli(sys.executable, "bench/bench_train.py", "--smoke", "--case", "qwen2.5-1.5b-full", "--arms", "planned",
            "--profile-steps", "1", "--out", str(tmp_path), "--work", str(tmp_path / "work"), timeout=600)
    result = json.loads((tmp_path / "bench.json").read_text())
    arm = result["cases"][0]["arms"][0]
    assert arm["tokens_per_s"] > 0 and arm["raw"]["window"]["steps"] == 2
    assert arm["losses"][0] > 0 and (tmp_path / "bench.md").exists()
