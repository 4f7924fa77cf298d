"""r1sft.patches.offloaded_checkpointing: LLaMA-Factory's ``use_unsloth_gc`` with the gradients of the network that
ran (the forward's dropout masks and autocast recomputed), on the layer's own device, switched on by the launcher
for recipes that ask for it."""

from __future__ import annotations

import pytest
import torch

from r1sft.patches import offloaded_checkpointing as oc
from r1sft.patches import registry
from tests.conftest import train_tiny_recipe
from tests.patches.lora_gradients import assert_same, lora_gradients


@pytest.fixture
def installed():
    oc.install()
    yield
    oc.uninstall()


def test_offloaded_checkpointing_gives_the_gradients_of_the_network_that_ran(tiny_model, installed):
    model_dir = tiny_model("tiny-qwen3")
    loss, plain = lora_gradients(model_dir, checkpointing="off")
    offloaded_loss, offloaded = lora_gradients(model_dir, checkpointing="offloaded")
    assert offloaded_loss == pytest.approx(loss, abs=1e-6)
    assert_same(plain, offloaded)
    assert oc._state["layers"] >= 2  # each decoder layer's input went through OffloadedCheckpoint
    _, torch_checkpointed = lora_gradients(model_dir, checkpointing="torch")
    assert_same(plain, torch_checkpointed)
    # the comparison sees dropout: other masks give other gradients
    _, other_masks = lora_gradients(model_dir, checkpointing="off", seed=7)
    assert any(not torch.allclose(plain[n], other_masks[n], atol=1e-3) for n in plain)


def test_the_recomputation_runs_under_the_forwards_autocast(tiny_model, installed):
    model_dir = tiny_model("tiny-qwen3")
    _, plain = lora_gradients(model_dir, checkpointing="off", autocast=True)
    _, offloaded = lora_gradients(model_dir, checkpointing="offloaded", autocast=True)
    assert_same(plain, offloaded, tol=1e-3)  # bf16 matmuls: a recomputation in fp32 would differ by ~1e-2


@pytest.mark.filterwarnings("ignore::FutureWarning")  # LLaMA-Factory's function uses torch.cuda.amp.custom_fwd
def test_llamafactory_hands_out_the_patched_function_once_installed_and_its_own_after(installed):
    from llamafactory.model.model_utils import checkpointing

    assert checkpointing.get_unsloth_gradient_checkpointing_func() is oc.offloaded_checkpointing_func()
    oc.uninstall()
    assert checkpointing.get_unsloth_gradient_checkpointing_func() is not oc.offloaded_checkpointing_func()


def test_the_launcher_switches_it_on_for_recipes_with_use_unsloth_gc_only():
    plan = registry.LaunchPlan()
    assert oc.wanted({"use_unsloth_gc": True}, {}, plan)
    assert not oc.wanted({"use_unsloth_gc": True, "disable_gradient_checkpointing": True}, {}, plan)
    assert not oc.wanted({"cutoff_len": 4096}, {}, plan)
    assert registry.switches({"use_unsloth_gc": True}, {}, plan)[oc.ENV_VAR] == "on"
    off = registry.switches({"use_unsloth_gc": True}, {oc.ENV_VAR: "off"}, plan)
    assert off[oc.ENV_VAR] == "off" and not oc.enabled_by_env(off)


@pytest.mark.slow
def test_a_tiny_recipe_trains_with_offloaded_checkpointing_under_r1sft_train(tmp_path):
    """LLaMA-Factory's own use_unsloth_gc copies back to "cuda" and fails on a CPU; under r1sft train it trains."""
    proc, log = train_tiny_recipe(tmp_path, "use_unsloth_gc=true", "max_steps=2")  # the CPU recipe: checkpointing off
    assert proc.returncode == 0, proc.stderr[-2000:] + log[-3000:]
    assert oc.ANNOUNCEMENT in log + proc.stderr
    assert "layer inputs kept in host memory" in log + proc.stderr
    assert "use_unsloth_gc=true implies disable_gradient_checkpointing: false" in proc.stdout + proc.stderr
