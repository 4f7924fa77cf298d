"""`r1sft train` on a real run: a quiet console with progress (everything in the log), a failure in one line, and
Ctrl-C ending in one line that names the checkpoint a re-run resumes from (CPU, tiny model)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from r1sft.paths import REPO_ROOT
from tests.conftest import VENV_BIN, as_foreground_job, run_cli

pytestmark = pytest.mark.slow


def _recipe(tmp_path):
    out = tmp_path / "out"
    run_cli(str(VENV_BIN / "r1sft"), "convert", "samples")
    run_cli(str(VENV_BIN / "r1sft"), "recipe", "tiny-qwen3", "--out-dir", str(tmp_path), "--set", f"output_dir={out}")
    return tmp_path / "tiny-qwen3" / "lora_sft.yaml", out


def test_a_failure_inside_llamafactory_is_one_line_with_the_logs_path(tmp_path):
    recipe, out = _recipe(tmp_path)
    proc = run_cli(str(VENV_BIN / "r1sft"), "train", "--no-check", str(recipe), "template=nonexistent",
                   check=False, timeout=300)
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert line == (f"r1sft train: LLaMA-Factory failed: ValueError: Template nonexistent does not exist. "
                    f"(full log: {out / 'train.node0.log'})")
    assert "Traceback" in (out / "train.node0.log").read_text() and "Traceback" not in proc.stdout


def test_ctrl_c_ends_in_one_line_naming_the_checkpoint_a_rerun_resumes_from(tmp_path):
    """Also issue 19, case 4: save_steps on the tiny recipe (save_strategy "no") saves every 2 steps."""
    recipe, out = _recipe(tmp_path)
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen(["bash", "run_sft.sh", str(recipe), "max_steps=2000", "save_steps=2"], cwd=REPO_ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,  # its own process group, as a terminal's foreground job
                            preexec_fn=as_foreground_job)
    deadline = time.monotonic() + 300
    while not (out / "checkpoint-2" / "trainer_state.json").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert 'save_steps=2 implies save_strategy: steps (the recipe had "no")' in stdout
    (line,) = stderr.splitlines()
    newest = max((p for p in out.glob("checkpoint-*") if (p / "trainer_state.json").exists()),
                 key=lambda p: int(p.name.split("-")[1]))
    assert line.startswith("r1sft train: interrupted at step ") and "/2000" in line
    assert line.endswith(f"`bash run_sft.sh {recipe}` resumes from {newest}")
    assert "Traceback" not in stdout + stderr and "KeyboardInterrupt" not in stdout + stderr
    assert len(stdout.splitlines()) <= 10 and "Model config" not in stdout
    assert "KeyboardInterrupt" in (out / "train.node0.log").read_text()  # the full story is in the log
