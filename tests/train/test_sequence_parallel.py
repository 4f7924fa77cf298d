"""--sequence-parallel 2 on CPU: two gloo processes share every trace and train exactly what one process trains on
whole traces (same global batch, fp32), through ZeRO-3 and a resume; packed traces keep their documents apart."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from r1sft.paths import REPO_ROOT
from tests.conftest import VENV_BIN, run_cli
from tests.train.test_launch import _assert_trained, _checkpoints, _run_sft

pytestmark = pytest.mark.slow

# Same data in the same order (no shuffling), no dropout: the two runs may differ only in how a trace is split.
SAME = ("--set", "lora_dropout=0", "--set", "disable_shuffling=true", "--set", "logging_steps=1",
        "--set", "per_device_train_batch_size=2", "--global-batch", "4")


def _recipe(tmp_path, name: str, *extra: str):
    out = tmp_path / name
    run_cli(str(VENV_BIN / "r1sft"), "convert", "samples")
    run_cli(str(VENV_BIN / "r1sft"), "recipe", "tiny-qwen3", "--method", "lora", "--out-dir", str(tmp_path / f"{name}-rec"),
            "--set", f"output_dir={out}", *extra)
    return tmp_path / f"{name}-rec" / "tiny-qwen3" / "lora_sft.yaml", out


def _steps(out) -> dict[int, tuple[float, float]]:
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return {entry["step"]: (entry["loss"], entry["grad_norm"]) for entry in history if "loss" in entry}


def _assert_same(whole: dict, split: dict, steps: range) -> list[str]:
    lines = []
    for step in steps:
        (loss, norm), (split_loss, split_norm) = whole[step], split[step]
        lines.append(f"step {step}: loss {loss:.7f} whole, {split_loss:.7f} split; grad norm {norm:.7f}, {split_norm:.7f}")
        assert split_loss == pytest.approx(loss, rel=1e-5), lines[-1]
        assert split_norm == pytest.approx(norm, rel=1e-5), lines[-1]
    print("\n".join(lines))
    return lines


def test_split_traces_train_as_whole_ones_under_zero3_and_resume(tmp_path):
    steps = ("--deepspeed", "z3", "--set", "save_strategy=steps", "--set", "save_steps=2", *SAME)
    whole_recipe, whole_out = _recipe(tmp_path, "whole", *steps)
    split_recipe, split_out = _recipe(tmp_path, "split", "--sequence-parallel", "2", *steps)
    assert "sequence_parallel=2" in split_recipe.read_text()

    # the one-process run trains alongside the first split run (two cores: their start-ups overlap)
    log = tmp_path / "whole.log"
    with open(log, "w") as sink:
        whole = subprocess.Popen(["bash", "run_sft.sh", str(whole_recipe), "max_steps=3"], cwd=REPO_ROOT,
                                 env=dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
                                          NPROC_PER_NODE="1", MASTER_PORT="29641"),
                                 stdout=sink, stderr=subprocess.STDOUT)
        first = _run_sft(split_recipe, split_out, "max_steps=2", env={"MASTER_PORT": "29642"})
        _assert_trained(whole.wait(timeout=900), log.read_text(errors="replace"), whole_out)
    output = first.stdout + first.stderr
    assert "NPROC_PER_NODE=2" in output, "a CPU recipe split over 2 starts 2 processes"
    assert "forwards split over 2 ranks" in output
    assert _checkpoints(split_out) == ["checkpoint-2"]

    second = _run_sft(split_recipe, split_out, "max_steps=3", env={"MASTER_PORT": "29642"})
    assert f"resuming from {split_out / 'checkpoint-2'}" in second.stdout
    _assert_same(_steps(whole_out), _steps(split_out), range(1, 4))


def test_split_packed_traces_keep_their_documents_apart_under_ddp(tmp_path):
    # --packing: several documents per row, told apart after the all-to-all by positions that restart; no
    # DeepSpeed: DDP averages the shards' gradients as ZeRO does
    whole_recipe, whole_out = _recipe(tmp_path, "whole", "--packing", "--global-batch", "24", *SAME[:6])
    split_recipe, split_out = _recipe(tmp_path, "split", "--packing", "--global-batch", "24", "--sequence-parallel", "2",
                                      *SAME[:6])
    _run_sft(whole_recipe, whole_out, "max_steps=2", env={"NPROC_PER_NODE": "1"})
    split = _run_sft(split_recipe, split_out, "max_steps=2", env={})
    assert "with packed documents" in split.stdout + split.stderr
    _assert_same(_steps(whole_out), _steps(split_out), range(1, 3))
