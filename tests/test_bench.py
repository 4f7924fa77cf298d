"""`make bench` plumbing on the CPU: synthetic lengths in tokens, the FLOP count, and a smoke run of one arm."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from r1sft.paths import REPO_ROOT
from tests.conftest import run_cli

sys.path.insert(0, str(REPO_ROOT / "bench"))

from benchlib.callback import count_documents  # noqa: E402
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


def test_document_counts_agree_across_packing_layouts():
    """TRL's padding-free position_ids, LLaMA-Factory's 4D block-diagonal mask and one padded row per document
    give the same tokens, sum of squared lengths, documents and longest document (what the FLOP count needs)."""
    import torch

    lengths = [3, 1, 5, 2]
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    doc = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    causal = torch.ones(len(doc), len(doc), dtype=torch.bool).tril()
    block = (causal & (doc[:, None] == doc[None, :]))[None, None]
    padded = torch.tensor([[1] * n + [0] * (max(lengths) - n) for n in lengths])
    want = [sum(lengths), sum(n * n for n in lengths), len(lengths), max(lengths)]
    for ids, mask, pos in ((positions, None, positions), (positions, block, None), (padded, padded, None)):
        assert [int(x) for x in count_documents(ids, mask, pos)] == want
    # r1sft's pack: the same documents, then a run of padding with restarting positions and no labels
    padded_pack = torch.cat([positions, torch.arange(4)[None]], dim=1)
    labels = torch.cat([torch.where(positions > 0, 7, -100), torch.full((1, 4), -100)], dim=1)
    assert [int(x) for x in count_documents(padded_pack, None, padded_pack, labels)] == want
    assert [int(x) for x in count_documents(positions, None, positions, torch.where(positions > 0, 7, -100))] == want


@pytest.mark.slow
def test_bench_smoke_cpu(tmp_path):
    run_cli(sys.executable, "bench/bench_train.py", "--smoke", "--case", "qwen2.5-1.5b-full", "--arms", "planned",
            "--profile-steps", "1", "--out", str(tmp_path), "--work", str(tmp_path / "work"), timeout=600)
    result = json.loads((tmp_path / "bench.json").read_text())
    arm = result["cases"][0]["arms"][0]
    assert arm["tokens_per_s"] > 0 and arm["raw"]["window"]["steps"] == 2
    assert arm["losses"][0] > 0 and (tmp_path / "bench.md").exists()


PEER_PYTHON = REPO_ROOT / ".venv-peers" / "bin" / "python"


def test_peer_venv_uses_this_venvs_torch_and_nothing_else_of_it():
    """``make peers`` links .venv's torch stack (bench/link_torch.py) rather than installing a second one: the peer
    interpreter imports this torch, its own transformers, and no LLaMA-Factory."""
    if not PEER_PYTHON.exists():
        pytest.skip("no .venv-peers: make peers (make test creates it)")
    import torch
    import transformers

    code = ("import importlib.util, torch, transformers; print(torch.__version__, transformers.__version__, "
            "importlib.util.find_spec('llamafactory') is None, importlib.util.find_spec('r1sft') is None, "
            "torch.__file__)")
    out = subprocess.run([str(PEER_PYTHON), "-c", code], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": "", "PYTHONNOUSERSITE": "1"}).stdout.split()
    assert out[0] == torch.__version__ and out[2:4] == ["True", "True"]
    assert out[1] != transformers.__version__
    assert ".venv-peers" not in out[4], "the peer venv has a torch of its own"


@pytest.mark.slow
def test_bench_smoke_cpu_peer_arms(tmp_path):
    """The TRL peer arms in .venv-peers (``make test`` creates it), measured like r1sft's plan on the same data: the
    unpacked one trains the very tokens LLaMA-Factory trains, from the same first loss."""
    if not PEER_PYTHON.exists():
        if os.environ.get("R1SFT_REQUIRE_PEERS"):
            pytest.fail(f"{PEER_PYTHON} missing: make peers")
        pytest.skip("no .venv-peers: make peers (make test creates it)")
    run_cli(sys.executable, "bench/bench_train.py", "--smoke", "--case", "qwen2.5-7b-lora", "--arms",
            "planned,trl_openr1,trl_fast", "--profile-steps", "0", "--out", str(tmp_path), "--work",
            str(tmp_path / "work"), timeout=900)
    result = json.loads((tmp_path / "bench.json").read_text())
    arms = {arm["arm"]: arm for arm in result["cases"][0]["arms"]}
    for name in ("trl_openr1", "trl_fast"):
        arm = arms[name]
        assert arm["peer"] and arm["tokens_per_s"] > 0 and arm["raw"]["window"]["steps"] == 2, arm.get("error")
        assert len(arm["losses"]) == 3 and arm["raw"]["meta"]["loss_on"] == "assistant"
        assert arm["config"]["peft"]["r"] == 64 and "PEFT LoRA r64" in arm["note"]
    plan, openr1, packed = arms["planned"]["raw"]["window"], arms["trl_openr1"]["raw"]["window"], arms["trl_fast"]
    assert openr1["tokens"] == plan["tokens"] and openr1["docs"] == plan["docs"]
    assert abs(arms["trl_openr1"]["losses"][0] - arms["planned"]["losses"][0]) < 1e-3
    # padding-free packs: documents counted one by one, not one per pack
    assert packed["raw"]["window"]["docs"] > packed["raw"]["window"]["micro_batches"]
    assert "trl_fast" in (tmp_path / "bench.md").read_text()


def test_memory_line_checks_the_promise_against_the_gpu_planned_for():
    from benchlib.report import memory_line

    arm = {"arm": "planned", "peak_smi_mib": 70 * 1024, "estimate_gib": 75.0, "estimate_parts": "parts"}
    assert "+7%, within 10%: ok" in memory_line(arm, 80.0)
    assert "88% of the 80 GiB planned for, <= 92%: ok" in memory_line(arm, 80.0)
    over = dict(arm, peak_smi_mib=76 * 1024, estimate_gib=60.0)
    assert "within 10%: MISSED" in memory_line(over, 80.0)
    assert "95% of the 80 GiB planned for, <= 92%: MISSED" in memory_line(over, 80.0)
    assert "planned for" not in memory_line(arm, None)
    assert "host:" not in memory_line(arm, 80.0)
    offloaded = dict(arm, estimate_host_gib=24.0, max_rss_mib=40 * 1024)
    assert memory_line(offloaded, 80.0).endswith("; host: peak RSS 40.0 GiB, of which the plan offloads ~24.0 GiB")


def test_memory_line_compares_an_unpacked_arm_at_its_longest_sample():
    from benchlib.report import memory_line

    arm = {"arm": "planned", "peak_smi_mib": 68 * 1024, "estimate_gib": 76.0, "estimate_parts": "parts",
           "estimate_at_longest_gib": 71.0, "estimate_at_longest_tokens": 15128}
    line = memory_line(arm, 140.0)
    assert "71.0 GiB at the run's longest sample (15,128 tokens) (+4%, within 10%: ok" in line


def test_targets_are_checked_against_the_fastest_trl_arm_and_mfu():
    from benchlib.report import case_summary

    arm = {"arm": "planned_packing", "tokens_per_s": 11000.0, "mfu": 0.44}
    peers = [{"arm": "trl_fast", "peer": True, "tokens_per_s": 3800.0}, {"arm": "trl_openr1", "peer": True,
                                                                          "tokens_per_s": 4200.0}]
    lines = case_summary({"case": "qwen2.5-7b-lora", "arms": [arm, *peers]})
    assert "  targets [planned_packing]: vs trl_openr1 2.62x (target 2x): met; MFU 44.0% (target 50%): MISSED" in lines
    assert any(line.startswith("  what limits [planned_packing]:") for line in lines)
