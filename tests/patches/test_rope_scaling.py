"""r1sft.patches.rope_scaling: a cutoff past the model's context with ``rope_scaling: yarn`` loads and trains on
LLaMA-Factory 0.9.5's own pinned stack (transformers 5's strict configs refuse the float context length it writes)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from r1sft.patches import registry, rope_scaling
from r1sft.paths import REPO_ROOT
from tests.conftest import train_tiny_recipe

CONFIGURE = """
import sys
from transformers import Qwen2Config
from llamafactory.hparams import ModelArguments
if sys.argv[1] == "patched":
    from r1sft.patches import rope_scaling
    rope_scaling.install()
from llamafactory.model import patcher
args = ModelArguments(model_name_or_path="x", rope_scaling="yarn")
args.model_max_length = 65536
config = Qwen2Config(max_position_embeddings=32768, rope_theta=1000000.0)
patcher.configure_rope(config, args)
rope = config.rope_parameters
print(type(config.max_position_embeddings).__name__, config.max_position_embeddings, rope["factor"],
      rope["rope_type"], rope["rope_theta"], rope["original_max_position_embeddings"])
"""


def _configure(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CONFIGURE, mode], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=300, env={"PYTHONPATH": str(REPO_ROOT / "tools"), "PATH": "/usr/bin:/bin"})


def test_llamafactorys_configure_rope_fails_without_the_patch_and_keeps_its_factor_with_it():
    plain = _configure("plain")
    assert plain.returncode != 0 and "expected int, got float (value: 65536.0)" in plain.stderr
    patched = _configure("patched")
    assert patched.returncode == 0, patched.stderr[-2000:]
    assert patched.stdout.splitlines()[-1].split() == ["int", "65536", "2.0", "yarn", "1000000.0",
                                                             "32768"]


def test_the_launcher_switches_it_on_for_recipes_with_rope_scaling_only():
    plan = registry.LaunchPlan()
    assert rope_scaling.wanted({"rope_scaling": "yarn"}, {}, plan)
    assert not rope_scaling.wanted({"cutoff_len": 4096}, {}, plan)
    assert registry.switches({"rope_scaling": "yarn", "use_cpu": True}, {}, plan)[rope_scaling.ENV_VAR] == "int"
    off = registry.switches({"rope_scaling": "yarn"}, {rope_scaling.ENV_VAR: "off"}, plan)
    assert off[rope_scaling.ENV_VAR] == "off" and not rope_scaling.enabled_by_env(off)


@pytest.mark.slow
def test_a_tiny_recipe_trains_past_its_context_with_yarn(tmp_path):
    proc, log = train_tiny_recipe(tmp_path, "cutoff_len=8192", "rope_scaling=yarn", "max_steps=1")
    assert proc.returncode == 0, proc.stderr[-2000:] + log[-3000:]
    assert "Enlarge max model length from 4096 to 8192" in log
    assert "max_position_embeddings stored as an int" in log + proc.stderr
