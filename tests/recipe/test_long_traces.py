"""Long traces on one GPU: where checkpointing on the GPU does not fit, the planner offloads the checkpoints to host
RAM (LLaMA-Factory's ``use_unsloth_gc``, r1sft.patches.offloaded_checkpointing), then tiles the MLP
(r1sft.patches.tiled_mlp), before ZeRO-3 offloads the weights, and says so in the recipe."""

from __future__ import annotations

import pytest

from r1sft.errors import R1sftError
from r1sft.presets import get_preset
from r1sft.recipe import RecipeRequest, check_recipes, plan_recipe, render_recipe, write_files
from r1sft.recipe.check import parse_header
from r1sft.recipe.fit import HEADROOM, MLP_TILE_TOKENS, uncheckpointed_layers
from r1sft.recipe.memory import GIB, estimate_memory

CUTOFF_128K = 131072


def _plan(root, tmp_path, gpu_mem, *overrides, model="qwen2.5-7b-base", method="lora", cutoff=CUTOFF_128K):
    sets = dict(item.split("=", 1) for item in overrides)
    return plan_recipe(RecipeRequest(model=model, method=method, gpus=1, gpu_mem=gpu_mem, cutoff=cutoff,
                                     overrides=sets, out_dir=tmp_path), data_dir=root / "data")


def test_offloading_moves_the_checkpoints_to_host_ram_but_the_one_recomputed():
    shape = get_preset("qwen2.5-7b").shape
    args = dict(method="lora", seq_len=CUTOFF_128K, fused_lora=True)
    kept, offloaded = estimate_memory(shape, **args), estimate_memory(shape, **args, offload_checkpoints=True)
    checkpoint = CUTOFF_128K * shape.hidden * 2  # one layer's bf16 input
    assert offloaded.host == pytest.approx(shape.layers * checkpoint)
    assert kept.parts["activations"] - offloaded.parts["activations"] == pytest.approx((shape.layers - 1) * checkpoint)
    assert estimate_memory(shape, **args, offload_checkpoints=True, on_gpu=False).host == 0


def test_a_128k_7b_lora_plan_on_one_80gb_gpu_offloads_its_checkpoints(root, tmp_path):
    plan = _plan(root, tmp_path, 80)
    assert plan.train["use_unsloth_gc"] is True and plan.train["disable_gradient_checkpointing"] is False
    assert plan.deepspeed is None and plan.uncheckpointed_layers == 0
    assert plan.memory.peak <= HEADROOM * 80 * GIB and plan.memory.host > 20 * GIB
    assert "over 90% of 80 GiB" in plan.why["use_unsloth_gc"]
    assert any(reason.startswith("offloaded checkpointing:") for reason in plan.reasons)
    assert "host RAM for offload ~24 GiB" in plan.memory_line
    write_files(render_recipe(plan))
    text = plan.sft_path.read_text()
    assert "use_unsloth_gc: true" in text and "# checkpoints in host RAM" in text
    assert check_recipes([plan.sft_path], root=root) == []  # LLaMA-Factory's parser takes it


def test_where_checkpoints_fit_on_the_gpu_nothing_is_offloaded(root, tmp_path):
    plan = _plan(root, tmp_path, 141)
    assert "use_unsloth_gc" not in plan.train and plan.memory.host == 0
    assert "use_unsloth_gc" not in _plan(root, tmp_path, 80, cutoff=65536).train
    # several GPUs: split the trace (--sequence-parallel) instead; CPU: nothing to offload to
    two = plan_recipe(RecipeRequest(model="qwen2.5-7b-base", gpus=2, gpu_mem=80, cutoff=65536, out_dir=tmp_path),
                      data_dir=root / "data")
    assert "use_unsloth_gc" not in two.train


def test_use_unsloth_gc_on_the_command_line_decides(root, tmp_path):
    forced = _plan(root, tmp_path, 141, "use_unsloth_gc=true")
    assert forced.train["use_unsloth_gc"] is True and "set on the command line" in forced.why["use_unsloth_gc"]
    # with LoRA dropout (--set, counted by the fit: its copies in the recomputed layer) even ZeRO-3 offload
    # does not fit; without it ZeRO-3 offload does (71.2 GiB)
    refused = RecipeRequest(model="qwen2.5-7b-base", method="lora", gpus=1, gpu_mem=80, cutoff=CUTOFF_128K,
                            overrides={"use_unsloth_gc": False, "lora_dropout": 0.05}, out_dir=tmp_path)
    with pytest.raises(R1sftError, match="does not fit 1 GPU x 1 node of 80 GiB.* or offloaded checkpointing "
                                          r"\(drop --set use_unsloth_gc=false\)$"):
        plan_recipe(refused, data_dir=root / "data")
    assert _plan(root, tmp_path, 80, "use_unsloth_gc=false").deepspeed == "z3_offload"


def test_the_launcher_keeps_no_layer_whole_in_an_offloaded_run():
    config = {"finetuning_type": "lora", "cutoff_len": 16384, "per_device_train_batch_size": 1,
              "lora_rank": 64, "enable_liger_kernel": True}
    preset = get_preset("qwen2.5-7b")
    assert uncheckpointed_layers(config, preset, 141, 1) > 0
    assert uncheckpointed_layers({**config, "use_unsloth_gc": True}, preset, 141, 1) == 0


def test_the_header_carries_the_host_ram_and_the_launcher_warns_when_it_is_not_free(root, tmp_path):
    from r1sft.recipe.machine import available_ram_gib, host_ram_problem

    plan = _plan(root, tmp_path, 80)
    write_files(render_recipe(plan))
    header = parse_header(plan.sft_path.read_text())
    assert header["host_ram_gib"] == "51"  # 24 offloaded + 14 of bf16 weights + the process (50.8 GiB measured)
    assert host_ram_problem(header, 200.0) is None
    assert "needs ~51 GiB of host RAM per node" in host_ram_problem(header, 40.0)
    on_gpu = _plan(root, tmp_path / "141", 141)
    write_files(render_recipe(on_gpu))
    assert "host_ram_gib" not in parse_header(on_gpu.sft_path.read_text())
    assert host_ram_problem({}, 1.0) is None
    assert available_ram_gib("MemTotal: 100 kB\nMemAvailable:    2097152 kB\n") == 2.0
    assert available_ram_gib("") is None


def test_a_128k_7b_lora_plan_on_a_48gb_gpu_tiles_its_mlp(root, tmp_path):
    plan = plan_recipe(RecipeRequest(model="qwen2.5-7b-base", gpus=1, gpu_mem=48, cutoff=131072, out_dir=tmp_path),
                       data_dir=root / "data")
    assert plan.mlp_tile_tokens == MLP_TILE_TOKENS and plan.train["use_unsloth_gc"] is True
    assert plan.memory.peak <= HEADROOM * 48 * GIB
    assert any(reason.startswith("tiled MLP: under r1sft train") for reason in plan.header_reasons)
    write_files(render_recipe(plan))
    assert parse_header(plan.sft_path.read_text())["tiled_mlp"] == str(MLP_TILE_TOKENS)
    on_80 = plan_recipe(RecipeRequest(model="qwen2.5-7b-base", gpus=1, gpu_mem=80, cutoff=131072, out_dir=tmp_path),
                        data_dir=root / "data")
    assert on_80.mlp_tile_tokens == 0  # offloading alone fits there
