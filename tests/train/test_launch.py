"""run_sft.sh: two processes under ZeRO-3, resume, two simulated nodes, refusing paths with spaces (CPU, real runs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings

import pytest
import yaml

from r1sft.paths import REPO_ROOT
from tests.conftest import VENV_BIN, run_cli

pytestmark = pytest.mark.slow


def _render(tmp_path, *extra: str) -> tuple:
    """A tiny-qwen3 LoRA recipe written under tmp_path, training into tmp_path/out."""
    out = tmp_path / "out"
    run_cli(str(VENV_BIN / "r1sft"), "convert", "samples")
    run_cli(str(VENV_BIN / "r1sft"), "recipe", "tiny-qwen3", "--method", "lora", "--out-dir", str(tmp_path / "rec"),
            "--set", f"output_dir={out}", "--set", "save_strategy=steps", "--set", "save_steps=2", "--set", "logging_steps=1", *extra)
    return tmp_path / "rec" / "tiny-qwen3" / "lora_sft.yaml", out


# PyTorch's gloo backend (CPU) can abort a worker in interpreter finalization, after every Python frame has
# returned: "terminate called without an active exception" / "Fatal Python error: Aborted" with no Python frame
# (pytorch/pytorch#179291). It happens in some 1 of 3 two-process CPU runs here, after training finished and saved;
# NCCL runs on the GPU machine exit 0. Only that signature is tolerated; the checkpoints are still asserted.
GLOO_TEARDOWN_ABORT = "terminate called without an active exception"


def _assert_trained(returncode: int, output: str, out) -> None:
    if returncode == 0:
        return
    logs = "".join(p.read_text(errors="replace") for p in out.glob("train.node*.log"))
    teardown_only = ("***** train metrics *****" in output + logs and GLOO_TEARDOWN_ABORT in output + logs
                     and "SIGABRT" in output + logs)
    assert teardown_only, f"run_sft.sh exited {returncode}\n{output[-6000:]}"
    warnings.warn("a CPU worker aborted in interpreter finalization after training finished (gloo teardown)",
                  stacklevel=2)


def _run_sft(recipe, out, *overrides: str, env: dict) -> subprocess.CompletedProcess:
    proc = run_cli("bash", "run_sft.sh", str(recipe), *overrides, env=env, check=False)
    _assert_trained(proc.returncode, proc.stdout + proc.stderr, out)
    return proc


def _log(out) -> str:
    """LLaMA-Factory's own output (the console shows a progress line instead)."""
    return "".join(p.read_text(errors="replace") for p in sorted(out.glob("train.node*.log")))


def _checkpoints(out) -> list[str]:
    return sorted((p.name for p in out.glob("checkpoint-*")), key=lambda n: int(n.split("-")[1]))


def test_two_processes_zero3_then_resume(tmp_path):
    recipe, out = _render(tmp_path, "--deepspeed", "z3")
    assert yaml.safe_load(recipe.read_text())["deepspeed"].endswith("z3.json")
    first = _run_sft(recipe, out, "max_steps=2", env={"NPROC_PER_NODE": "2"})
    assert "NPROC_PER_NODE=2 FORCE_TORCHRUN=1" in first.stdout
    assert "world size: 2" in _log(out)
    assert _checkpoints(out) == ["checkpoint-2"]
    assert (out / "checkpoint-2" / "global_step2").is_dir(), "ZeRO-3 saves its sharded state per step"
    assert (out / "train.node0.log").stat().st_size > 0

    second = _run_sft(recipe, out, "max_steps=4", env={"NPROC_PER_NODE": "2"})
    assert f"resuming from {out / 'checkpoint-2'}" in second.stdout
    assert "Continuing training from checkpoint" in _log(out) or "Resuming training from checkpoint" in _log(out)
    assert _checkpoints(out) == ["checkpoint-2", "checkpoint-4"]


def test_two_nodes_on_one_machine_train_together(tmp_path):
    recipe, out = _render(tmp_path)
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", NNODES="2", MASTER_ADDR="127.0.0.1",
               MASTER_PORT="29631", NPROC_PER_NODE="1")
    procs = [subprocess.Popen(["bash", "run_sft.sh", str(recipe), "max_steps=2"], cwd=REPO_ROOT,
                              env=dict(env, NODE_RANK=str(rank)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for rank in (0, 1)]
    outputs = [proc.communicate(timeout=900)[0] for proc in procs]
    for proc, output in zip(procs, outputs, strict=True):
        _assert_trained(proc.returncode, output, out)
    for rank, output in enumerate(outputs):
        assert f"NNODES=2 NODE_RANK={rank}" in output
    assert "world size: 2" in _log(out)
    assert (out / "train.node0.log").exists() and (out / "train.node1.log").exists()
    assert (out / "adapter_model.safetensors").exists()


def test_recipe_path_with_space_fails_fast(tmp_path):
    spaced = tmp_path / "my recipes"
    spaced.mkdir()
    recipe, _ = _render(tmp_path)
    shutil.copy(recipe, spaced / "lora_sft.yaml")
    proc = run_cli("bash", "run_sft.sh", str(spaced / "lora_sft.yaml"), check=False, timeout=60)
    assert proc.returncode != 0
    assert "contains a space" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_override_with_space_is_refused(tmp_path):
    recipe, _ = _render(tmp_path)
    proc = run_cli("bash", "run_sft.sh", str(recipe), "run_name=two words", check=False, timeout=120)
    assert proc.returncode == 2
    assert "cannot contain spaces" in proc.stderr
