"""Shared fixtures: the tiny models are built once per machine (cached) and shared by every test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from r1sft.paths import REPO_ROOT

# No test may reach the hub; fail fast instead of waiting on timeouts.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models: one thread per process beats two fighting over two cores (and torchrun starts two processes).
os.environ.setdefault("OMP_NUM_THREADS", "1")

VENV_BIN = Path(sys.executable).parent


def as_foreground_job() -> None:
    """``preexec_fn`` for a child a test interrupts with SIGINT as a terminal's Ctrl-C would: a suite started in
    the background (``cmd &`` in a script) inherits SIGINT ignored, and so would the child, which would then never
    see the interrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session")
def tiny_model():
    """``tiny_model("tiny-qwen3")`` -> folder of the cached tiny model."""
    from r1sft.tiny import ensure_tiny_model

    return ensure_tiny_model


def run_cli(*argv: str, env: dict | None = None, cwd: Path = REPO_ROOT, timeout: int = 900,
            check: bool = True) -> subprocess.CompletedProcess:
    """Run a command the way a user would (venv bin/ first on PATH); return the completed process."""
    full_env = dict(os.environ)
    full_env["PATH"] = f"{VENV_BIN}{os.pathsep}{full_env.get('PATH', '')}"
    full_env.update(env or {})
    proc = subprocess.run(list(argv), cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}\n"
                             f"--- stderr\n{proc.stderr[-6000:]}")
    return proc


def train_tiny_recipe(tmp_path: Path, *overrides: str, timeout: int = 600,
                      env: dict | None = None) -> tuple[subprocess.CompletedProcess, str]:
    """``r1sft train`` of a fresh tiny-qwen3 LoRA recipe (the bundled sample) with ``overrides`` (and ``env``): the
    finished process and the training log, which also holds what the start-up patches printed."""
    out = tmp_path / "out"
    run_cli(str(VENV_BIN / "r1sft"), "convert", "samples")
    run_cli(str(VENV_BIN / "r1sft"), "recipe", "tiny-qwen3", "--out-dir", str(tmp_path), "--set", f"output_dir={out}")
    proc = run_cli(str(VENV_BIN / "r1sft"), "train", str(tmp_path / "tiny-qwen3" / "lora_sft.yaml"), *overrides,
                   check=False, timeout=timeout, env=env)
    log_file = out / "train.node0.log"
    return proc, log_file.read_text() if log_file.exists() else ""
