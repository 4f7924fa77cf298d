"""`r1sft recipe` from the command line, and (slow) the tiny recipe training on the CPU as rendered."""

from __future__ import annotations

import shutil

import pytest
import yaml

from r1sft.cli import main
from r1sft.recipe import RecipeRequest, plan_recipe, render_recipe, write_files
from tests.conftest import run_cli
from tests.recipe.conftest import make_root


def test_recipe_command_writes_both_files_and_explains(tmp_path, capsys):
    code = main(["recipe", "qwen3-14b", "--method", "full", "--gpus", "8", "--cutoff", "8192",
                 "--set", "max_grad_norm=0.2", "--out-dir", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "memory estimate: ~" in out and "ZeRO-3" in out and "2 per device x GA 6 x 8 = 96" in out
    text = (tmp_path / "qwen3-14b" / "full_sft.yaml").read_text()
    assert "r1sft recipe qwen3-14b --method full --gpus 8 --cutoff 8192 --set max_grad_norm=0.2" in text
    assert "make recipe MODEL=qwen3-14b METHOD=full GPUS=8 CUTOFF=8192 SET=\"max_grad_norm=0.2\"" in text
    assert not (tmp_path / "qwen3-14b" / "full_merge.yaml").exists()


def test_recipe_command_errors_are_one_line(tmp_path, capsys):
    assert main(["recipe", "qwen3-9b", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown model preset 'qwen3-9b'" in err
    assert main(["recipe", "qwen3-8b", "--gpus", "5", "--out-dir", str(tmp_path)]) == 2
    assert "GLOBAL_BATCH=96 cannot be split over 5 GPUs" in capsys.readouterr().err


def test_list_shows_every_preset(capsys):
    assert main(["recipe", "--list"]) == 0
    out = capsys.readouterr().out
    assert "qwen2.5-72b" in out and "tiny-llama3.2" in out and "Qwen/Qwen3-8B" in out


@pytest.mark.slow
def test_tiny_recipe_trains_on_cpu_as_rendered(tmp_path):
    """The rendered tiny recipe, unchanged but for max_steps, trains with llamafactory-cli on a CPU."""
    root = make_root(tmp_path / "root")
    plan = plan_recipe(RecipeRequest(model="tiny-qwen3", out_dir=root / "recipes", overrides={"max_steps": 2}),
                       data_dir=root / "data")
    write_files(render_recipe(plan))
    recipe = plan.sft_path.relative_to(root)
    proc = run_cli(shutil.which("llamafactory-cli") or "llamafactory-cli", "train", str(recipe), cwd=root,
                   env={"CUDA_VISIBLE_DEVICES": ""}, timeout=600)
    output_dir = root / yaml.safe_load(plan.sft_path.read_text())["output_dir"]
    assert (output_dir / "adapter_model.safetensors").is_file(), proc.stdout[-3000:]
    assert (output_dir / "training_loss.png").is_file() or "'loss'" in proc.stdout + proc.stderr
