"""r1sft.patches.tiled_mlp: the MLP computed tile by tile gives the gradients of the untiled network (dropout masks
included), alone, with fused LoRA layers and under both checkpointings; the launcher turns it on from the recipe
header (the planner's side: tests/recipe/test_long_traces.py)."""

from __future__ import annotations

import pytest

from r1sft.errors import R1sftError
from r1sft.patches import fused_lora, registry, tiled_mlp
from r1sft.patches import offloaded_checkpointing as oc
from r1sft.presets import get_preset
from r1sft.recipe.memory import GIB, estimate_memory
from r1sft.train.launch import mlp_tile_tokens
from tests.conftest import train_tiny_recipe
from tests.patches.lora_gradients import assert_same, lora_gradients


@pytest.fixture
def patched():
    """Offloaded checkpointing and fused LoRA installed (as r1sft train would); tiled_mlp installed by the test."""
    oc.install()
    yield
    tiled_mlp.uninstall()
    fused_lora.uninstall()
    oc.uninstall()


class AutogradTiles:
    """The tiles computed with autograd keeping every tile's tensors: the network a tiled forward runs (dropout
    draws its masks tile by tile), with the gradients autograd gives it, the reference for TiledMLP's."""

    @staticmethod
    def apply(mlp_forward, mlp, x, count):
        import torch

        return torch.cat([mlp_forward(mlp, part) for part in x.chunk(count, dim=-2)], dim=-2)


@pytest.mark.parametrize("checkpointing", ["off", "torch", "offloaded"])
@pytest.mark.parametrize("fused", [False, True], ids=["peft", "fused-lora"])
def test_tiles_give_the_gradients_of_the_network_that_ran(tiny_model, patched, checkpointing, fused):
    model_dir = tiny_model("tiny-qwen3")
    if fused:
        assert fused_lora.install()
    tiled_mlp.install(tile_tokens=8)  # 24-token rows: 3 tiles
    recomputing = tiled_mlp._state["function"]
    tiled_mlp._state["function"] = AutogradTiles
    loss, reference = lora_gradients(model_dir, checkpointing="off")
    tiled_mlp._state["function"] = recomputing
    tiled_loss, tiled = lora_gradients(model_dir, checkpointing=checkpointing)
    assert tiled_mlp._state["tiled"] > 0
    assert tiled_loss == pytest.approx(loss, abs=1e-5)
    assert_same(reference, tiled, tol=1e-4)


def test_without_dropout_tiles_compute_what_the_whole_mlp_computes(tiny_model, patched):
    model_dir = tiny_model("tiny-qwen3")
    loss, whole = lora_gradients(model_dir, checkpointing="off", dropout=0.0)
    tiled_mlp.install(tile_tokens=8)
    tiled_loss, tiled = lora_gradients(model_dir, checkpointing="torch", dropout=0.0)
    assert tiled_loss == pytest.approx(loss, abs=1e-5)
    assert_same(whole, tiled, tol=1e-4)


def test_a_tile_as_long_as_the_rows_leaves_the_mlp_as_it_is(tiny_model, patched):
    tiled_mlp.install(tile_tokens=1024)
    lora_gradients(tiny_model("tiny-qwen3"), checkpointing="off")
    assert tiled_mlp._state["tiled"] == 0
    assert tiled_mlp.tiles(131072, 8192) == 16 and tiled_mlp.tiles(100, 0) == 1 and tiled_mlp.tiles(8193, 8192) == 2


def test_the_launcher_reads_the_tiles_from_the_recipe_header():
    assert mlp_tile_tokens({"tiled_mlp": "8192"}) == 8192 and mlp_tile_tokens({}) == 0
    with pytest.raises(R1sftError, match="tiled_mlp=big: expected a whole number"):
        mlp_tile_tokens({"tiled_mlp": "big"})
    on = registry.switches({"finetuning_type": "lora"}, {}, registry.LaunchPlan(mlp_tile_tokens=8192))
    assert on[tiled_mlp.ENV_VAR] == "8192" and tiled_mlp.enabled_by_env(on)
    assert tiled_mlp.ENV_VAR not in registry.switches({"finetuning_type": "lora"}, {}, registry.LaunchPlan())


def test_tiling_counts_one_tile_of_the_mlp_tensors():
    shape = get_preset("qwen2.5-7b").shape
    args = dict(method="lora", seq_len=131072, fused_lora=True, offload_checkpoints=True)
    whole, tiled = estimate_memory(shape, **args), estimate_memory(shape, **args, mlp_tile_tokens=8192)
    saved = whole.parts["activations"] - tiled.parts["activations"]
    assert 18 * GIB < saved < whole.parts["activations"] - 8 * GIB  # most of the MLP's 4.6 GiB tensors, not all
    moe = get_preset("qwen3-30b-a3b").shape  # its experts are not the dense MLP the patch wraps
    assert estimate_memory(moe, **args, mlp_tile_tokens=8192).peak == estimate_memory(moe, **args).peak


@pytest.mark.slow
def test_a_tiny_recipe_trains_with_the_mlp_in_tiles_under_r1sft_train(tmp_path):
    proc, log = train_tiny_recipe(tmp_path, "max_steps=2", env={tiled_mlp.ENV_VAR: "64"})
    assert proc.returncode == 0, proc.stderr[-2000:] + log[-3000:]
    assert tiled_mlp.ANNOUNCEMENT in log + proc.stderr
    assert "MLP calls in tiles of 64 tokens" in log + proc.stderr
