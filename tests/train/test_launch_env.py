"""The launcher's environment: multi-node settings that cannot meet are refused, a launch on other hardware than
the recipe was planned for is said, and a CPU DeepSpeed recipe (how the ZeRO-3 path is tested) passes the check."""

from __future__ import annotations

import re

import pytest
import yaml

from r1sft.errors import R1sftError
from r1sft.train import launch
from tests.conftest import VENV_BIN, run_cli

GPU_LORA = {"finetuning_type": "lora", "bf16": True, "output_dir": "saves/x"}


@pytest.mark.parametrize("env, expected", [
    ({"NNODES": "2", "NODE_RANK": "0"}, "set MASTER_ADDR"),
    ({"NNODES": "2", "MASTER_ADDR": "10.0.0.1"}, "set NODE_RANK"),
    ({"NNODES": "2", "MASTER_ADDR": "10.0.0.1", "NODE_RANK": "2"}, "NODE_RANK=2: expected 0..1"),
    ({"NNODES": "two"}, "NNODES=two: expected a whole number"),
    ({"NPROC_PER_NODE": "0"}, "NPROC_PER_NODE=0: expected a whole number of at least 1"),
])
def test_launches_that_cannot_work_are_refused(env, expected):
    with pytest.raises(R1sftError, match=expected):
        launch.launch_environment(GPU_LORA, {"PATH": "/usr/bin", **env})


def test_two_nodes_with_their_addresses_are_fine():
    env = launch.launch_environment(GPU_LORA, {"PATH": "/usr/bin", "NNODES": "2", "MASTER_ADDR": "10.0.0.1",
                                               "NODE_RANK": "1", "NPROC_PER_NODE": "8"})
    assert (env["NNODES"], env["NODE_RANK"], env["MASTER_PORT"], env["FORCE_TORCHRUN"]) == ("2", "1", "29500", "1")


def test_a_launch_on_other_hardware_says_what_happens_to_the_batch():
    header = {"preset": "qwen3-8b", "gpus": "8", "nodes": "1", "global_batch": "96"}
    assert launch.world_size_warning(header, {"NPROC_PER_NODE": "8", "NNODES": "1"}) is None
    line = launch.world_size_warning(header, {"NPROC_PER_NODE": "4", "NNODES": "1"})
    assert "global batch of 96 for 8 processes" in line and "holds 48 samples" in line
    assert "holds 192" in launch.world_size_warning(header, {"NPROC_PER_NODE": "8", "NNODES": "2"})
    assert launch.world_size_warning({}, {"NPROC_PER_NODE": "4", "NNODES": "1"}) is None  # not planned by r1sft


def test_cpu_deepspeed_recipe_is_written_and_passes_the_check(tmp_path):
    run_cli(str(VENV_BIN / "r1sft"), "convert", "samples")
    run_cli(str(VENV_BIN / "r1sft"), "recipe", "tiny-qwen3", "--deepspeed", "z3", "--out-dir", str(tmp_path))
    recipe = tmp_path / "tiny-qwen3" / "lora_sft.yaml"
    assert yaml.safe_load(recipe.read_text())["deepspeed"] == "ds_configs/z3.json"
    run_cli(str(VENV_BIN / "r1sft"), "check", str(recipe))


def test_a_typo_in_an_override_is_refused_before_anything_is_written(tmp_path):
    run_cli(str(VENV_BIN / "r1sft"), "convert", "samples")
    out = tmp_path / "out"
    run_cli(str(VENV_BIN / "r1sft"), "recipe", "tiny-qwen3", "--out-dir", str(tmp_path), "--set", f"output_dir={out}")
    proc = run_cli("bash", "run_sft.sh", str(tmp_path / "tiny-qwen3" / "lora_sft.yaml"), "learning_rat=1e-5",
                   check=False, timeout=300)
    assert proc.returncode == 2
    assert "override learning_rat: not a LLaMA-Factory 0.9.5 training argument (did you mean 'learning_rate'?)" \
        in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
    maybe = run_cli("bash", "run_sft.sh", str(tmp_path / "tiny-qwen3" / "lora_sft.yaml"), "resume=maybe",
                    check=False, timeout=300)
    assert maybe.returncode == 2 and "override resume=maybe: expected true or false" in maybe.stderr
    merge = run_cli("bash", "run_sft.sh", str(tmp_path / "tiny-qwen3" / "lora_merge.yaml"), check=False, timeout=300)
    assert merge.returncode == 2 and "a merge (export) recipe, not a training one" in merge.stderr


def test_planner_errors_say_what_was_wrong():
    from r1sft.recipe import RecipeRequest, plan_recipe

    with pytest.raises(R1sftError, match="cutoff_len=abc: expected a positive whole number"):
        plan_recipe(RecipeRequest(model="qwen3-8b", overrides={"cutoff_len": "abc"}), build_tiny=False)
    with pytest.raises(R1sftError, match=r"--method qlora or a shorter --cutoff") as caught:
        plan_recipe(RecipeRequest(model="qwen2.5-72b", method="lora", gpus=1, gpu_mem=24), build_tiny=False)
    assert "lighter" not in str(caught.value) and "lora or qlora" not in str(caught.value)


@pytest.mark.parametrize("argv, expected", [
    (["--think", "off", "--set", "enable_thinking=true"], "THINK=off and --set enable_thinking=true disagree"),
    (["--dataset", " , "], "--dataset ' , ': expected comma-separated names"),
    (["--dataset", "r1sft_sample,r1sft_sample"], "dataset r1sft_sample named twice"),
    (["--cutoff", "8192", "--set", "cutoff_len=4096"], "CUTOFF=8192 and --set cutoff_len=4096 disagree"),
])
def test_contradictory_recipe_requests_are_refused(argv, expected, tmp_path, capsys):
    from r1sft.cli import main

    assert main(["recipe", "qwen3-8b", *argv, "--out-dir", str(tmp_path)]) == 2
    assert expected in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_gpu_recipe_on_a_machine_without_one_is_refused_before_anything_is_written(tmp_path):
    """Issue 19, case 1: `make recipe ... GPUS=1 && bash run_sft.sh RECIPE max_steps=2` on a machine without a GPU."""
    out = tmp_path / "out"
    run_cli(str(VENV_BIN / "r1sft"), "recipe", "tiny-qwen3", "--gpus", "1", "--out-dir", str(tmp_path),
            "--set", f"output_dir={out}")
    recipe = tmp_path / "tiny-qwen3" / "lora_sft.yaml"
    run_cli(str(VENV_BIN / "r1sft"), "check", str(recipe))  # a GPU recipe is fine, judged for any machine
    for env, shows in (({"CUDA_VISIBLE_DEVICES": ""}, "none (nvidia-smi, CUDA_VISIBLE_DEVICES)"),
                       ({"CUDA_VISIBLE_DEVICES": "0", "NPROC_PER_NODE": "2"}, "1 GPU")):
        proc = run_cli("bash", "run_sft.sh", str(recipe), "max_steps=2", env=env, check=False, timeout=120)
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.splitlines()
        assert shows in line and line.startswith(f"r1sft train: error: {recipe}: ") and proc.stdout == ""
    assert line.endswith("NPROC_PER_NODE=2 but this machine shows 1 GPU: set NPROC_PER_NODE=1 or less")
    assert not out.exists()
    proc = run_cli(str(VENV_BIN / "r1sft"), "check", "--here", str(recipe), env={"CUDA_VISIBLE_DEVICES": ""},
                   check=False)
    assert proc.returncode == 2
    assert "re-render it for the CPU: make recipe MODEL=tiny-qwen3 METHOD=lora GPUS=0 SET=" in proc.stdout


def test_an_override_says_what_it_implies_or_why_it_would_do_nothing(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text('output_dir: saves/x\nsave_strategy: "no"\nmax_steps: 30\nnum_train_epochs: 1.0\n')
    notes = []
    assert launch._overrides(recipe, ["save_steps=2"], True, notes) == ({"save_steps": 2, "save_strategy": "steps"},
                                                                        True)
    assert notes == ['r1sft: save_steps=2 implies save_strategy: steps (the recipe had "no")']
    for pairs, expected in (
        (["num_train_epochs=3"], "num_train_epochs=3 has no effect: the recipe's max_steps: 30 ends training first; "
                                 "add max_steps=-1 to train by epochs"),
        (["save_total_limit=2"], "save_total_limit=2 has no effect: the recipe saves no checkpoints"),
        (["eval_steps=5"], "eval_steps=5 has no effect: the recipe holds no evaluation data; add val_size=0.05"),
    ):
        with pytest.raises(R1sftError, match=re.escape(expected)):
            launch._overrides(recipe, pairs, True, [])
    checkpointing_off = tmp_path / "off.yaml"
    checkpointing_off.write_text("output_dir: saves/x\ndisable_gradient_checkpointing: true\n")
    notes = []
    assert launch._overrides(checkpointing_off, ["use_unsloth_gc=true"], True, notes)[0] == {
        "use_unsloth_gc": True, "disable_gradient_checkpointing": False}
    assert notes == ["r1sft: use_unsloth_gc=true implies disable_gradient_checkpointing: false (it offloads the "
                     "checkpoints; the recipe had checkpointing off)"]
    overrides, _ = launch._overrides(recipe, ["eval_steps=5", "val_size=0.1", "num_train_epochs=2", "max_steps=-1"],
                                     True, [])
    assert overrides["eval_strategy"] == "steps"
