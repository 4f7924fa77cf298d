"""r1sft recipe --sequence-parallel N|auto: the batch arithmetic with data-parallel size GPUs / N, the recipe's
r1sft: line, the smallest N that fits, and one-line refusals of what cannot be split."""

from __future__ import annotations

import pytest
import yaml

from r1sft.errors import R1sftError
from r1sft.presets import get_preset
from r1sft.recipe import RecipeRequest, estimate_memory, plan_recipe
from r1sft.recipe.check import check_recipe, parse_header
from r1sft.recipe.render import render_recipe, write_files


def _plan(root, model="qwen2.5-7b", method="lora", **kwargs):
    request = RecipeRequest(model=model, method=method, out_dir=root / "recipes", **kwargs)
    return plan_recipe(request, data_dir=root / "data", build_tiny=False)


def test_global_batch_is_per_device_x_accumulation_x_data_parallel_size(root):
    plan = _plan(root, gpus=8, cutoff=32768, sequence_parallel=4)
    train = plan.train
    assert plan.sequence_parallel == 4 and plan.data_parallel == 2
    assert train["gradient_accumulation_steps"] % 4 == 0  # each batch is 4 micro-batches, one shard of it each
    assert train["per_device_train_batch_size"] * train["gradient_accumulation_steps"] * 2 == 96
    assert "2 data-parallel ranks (8 GPUs / 4 per trace" in plan.why["gradient_accumulation_steps"]
    assert "8192 on each of 4 ranks" in plan.why["per_device_train_batch_size"]
    sft = [p for p in write_files(render_recipe(plan)) if p.name.endswith("_sft.yaml")][0]
    text = sft.read_text()
    assert parse_header(text)["sequence_parallel"] == "4"
    assert "sequence_parallel" not in yaml.safe_load(text)  # not a LLaMA-Factory key: its parser would refuse it
    assert "--sequence-parallel 4" in text and "SP=4" in text
    assert check_recipe(sft, root=root) == []


def test_each_gpu_holds_a_quarter_of_the_trace(root):
    shape = get_preset("qwen2.5-7b").shape
    whole, split = (estimate_memory(shape, method="lora", seq_len=131072, zero_stage=3, world_size=8,
                                    sequence_parallel=n) for n in (1, 4))
    assert split.parts["activations"] == pytest.approx(whole.parts["activations"] / 4, rel=1e-6)
    assert split.parts["weights"] == whole.parts["weights"]


def test_auto_takes_the_smallest_split_that_fits(root):
    plan = _plan(root, method="full", gpus=8, gpu_mem=40, cutoff=32768, sequence_parallel="auto")
    assert plan.sequence_parallel > 1
    assert plan.memory.peak_gib <= 40 * 0.9
    smaller = [n for n in (1, 2, 4) if n < plan.sequence_parallel]
    for n in smaller:  # every smaller split was tried and did not fit
        assert f"N={n} needs" in plan.summary()
    whole = _plan(root, gpus=8, cutoff=16384, sequence_parallel="auto")
    assert whole.sequence_parallel == 1 and "whole traces fit" in whole.summary()


@pytest.mark.parametrize("kwargs, expected", [
    ({"sequence_parallel": 8}, "8 does not divide the model's 28 attention heads"),
    ({"sequence_parallel": 3}, "3 does not divide the 8 GPUs per node"),
    ({"sequence_parallel": 2, "method": "qlora"}, "QLoRA is not served"),
    ({"sequence_parallel": 2, "gpus": 0}, "a CPU recipe runs one process"),
    ({"sequence_parallel": 2, "overrides": {"val_size": 0.1}}, "evaluation during training is not served"),
    ({"sequence_parallel": 2, "overrides": {"use_dft_loss": True}}, "use_dft_loss: the split loss"),
    ({"sequence_parallel": 4, "overrides": {"gradient_accumulation_steps": 6}}, "use a multiple of 4"),
    ({"sequence_parallel": "auto", "overrides": {"gradient_accumulation_steps": 8}}, "auto chooses the accumulation"),
    ({"sequence_parallel": "two"}, "expected a whole number of GPUs per trace"),
])
def test_what_cannot_be_split_is_refused_in_one_line(root, kwargs, expected):
    kwargs = {"gpus": 8, **kwargs}
    with pytest.raises(R1sftError, match=expected) as info:
        _plan(root, **kwargs)
    assert "\n" not in str(info.value)


def test_key_value_heads_may_be_copied_when_n_is_a_multiple_of_them(root):
    # Qwen2.5-1.5B: 12 query heads, 2 key/value heads; N=4 gives each rank a copy of one (DeepSpeed's rule)
    assert _plan(root, model="qwen2.5-1.5b", gpus=8, sequence_parallel=4).sequence_parallel == 4
    with pytest.raises(R1sftError, match="does not divide the model's 12 attention heads"):
        _plan(root, model="qwen2.5-1.5b", gpus=8, sequence_parallel=8)


def test_tiny_cpu_recipe_splits_over_processes(root):
    plan = _plan(root, model="tiny-qwen3", gpus=0, sequence_parallel=2,
                 overrides={"per_device_train_batch_size": 2})
    assert plan.world == 2 and plan.data_parallel == 1
    assert plan.train["per_device_train_batch_size"] * plan.train["gradient_accumulation_steps"] == 8
    assert "CPU (2 processes" in plan.summary()
