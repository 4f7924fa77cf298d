"""The launcher and --sequence-parallel: the recipe's r1sft: line (or R1SFT_SEQUENCE_PARALLEL) becomes the patch's
switch in every process, a CPU recipe starts one process per shard, and launches that cannot split are refused."""

from __future__ import annotations

import pytest

from r1sft.errors import R1sftError
from r1sft.patches import registry
from r1sft.train import launch

CPU_LORA = {"finetuning_type": "lora", "use_cpu": True, "output_dir": "saves/x", "gradient_accumulation_steps": 4}
GPU_LORA = {"finetuning_type": "lora", "bf16": True, "output_dir": "saves/x", "gradient_accumulation_steps": 8}
SPLIT = {"preset": "tiny-qwen3", "gpus": "0", "nodes": "1", "global_batch": "8", "sequence_parallel": "2"}


def test_a_split_cpu_recipe_starts_a_process_per_shard_with_the_patch_on():
    env = launch.launch_environment(CPU_LORA, {"PATH": "/usr/bin"}, header=SPLIT)
    assert (env["NPROC_PER_NODE"], env["FORCE_TORCHRUN"], env["R1SFT_SEQUENCE_PARALLEL"]) == ("2", "1", "2")
    assert env["PYTHONPATH"].split(":")[0] == str(registry.SITE_DIR)
    assert launch.world_size_warning(SPLIT, env) is None


def test_the_environment_names_the_split_too():
    env = launch.launch_environment(GPU_LORA, {"PATH": "/usr/bin", "NPROC_PER_NODE": "8",
                                               "R1SFT_SEQUENCE_PARALLEL": "4"})
    assert env["R1SFT_SEQUENCE_PARALLEL"] == "4"
    env = launch.launch_environment(GPU_LORA, {"PATH": "/usr/bin", "NPROC_PER_NODE": "8"})
    assert "R1SFT_SEQUENCE_PARALLEL" not in env


@pytest.mark.parametrize("config, env, expected", [
    (GPU_LORA, {"NPROC_PER_NODE": "6"}, "NPROC_PER_NODE=6 is not a multiple of 4"),
    ({**GPU_LORA, "gradient_accumulation_steps": 6}, {"NPROC_PER_NODE": "8"}, "6 is not a multiple of 4"),
    ({**GPU_LORA, "val_size": 0.05}, {"NPROC_PER_NODE": "8"}, "evaluation during training is not served"),
    ({**GPU_LORA, "quantization_bit": 4}, {"NPROC_PER_NODE": "8"}, "QLoRA"),
    (GPU_LORA, {"NPROC_PER_NODE": "8", "R1SFT_SEQUENCE_PARALLEL": "x"}, "sequence_parallel=x: expected a whole"),
])
def test_launches_that_cannot_split_are_refused(config, env, expected):
    with pytest.raises(R1sftError, match=expected):
        launch.launch_environment(config, {"PATH": "/usr/bin", **env}, header={"sequence_parallel": "4"})
