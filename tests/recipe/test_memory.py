"""The memory model: within 15% of H100 measurements of Qwen2.5-1.5B full SFT, and sane in its trends."""

from __future__ import annotations

import pytest

from r1sft.presets import get_preset
from r1sft.recipe.memory import GIB, estimate_memory

QWEN15 = get_preset("qwen2.5-1.5b").shape

# (settings, measured peak MiB) on one H100, random-init Qwen2.5-1.5B full SFT, batch 1, samples up to ~15k tokens.
# No checkpointing: measured by `make bench` (docs/bench/h100-planned-tuned-1.5b.md) under run_sft.sh's
# expandable_segments allocator; the 77,087 MiB measured before the benchmark existed was the default allocator's
# fragmentation on top of the same tensors. The other three predate the benchmark (raw output not in this repository;
# the memory module's docstring lists them).
MEASURED = [
    ({"zero_stage": None, "gradient_checkpointing": True, "liger": True}, 30073),
    ({"zero_stage": None, "gradient_checkpointing": False, "liger": True}, 60327),
    ({"zero_stage": 3, "gradient_checkpointing": True, "liger": True}, 34773),
    ({"zero_stage": 3, "gradient_checkpointing": True, "liger": False}, 61893),
]


@pytest.mark.parametrize(("settings", "mib"), MEASURED)
def test_estimate_is_within_15_percent_of_the_h100_measurements(settings, mib):
    estimate = estimate_memory(QWEN15, method="full", seq_len=15000, **settings)
    measured = mib * 1024**2
    assert abs(estimate.peak - measured) / measured < 0.15, (estimate.peak / GIB, measured / GIB, estimate.parts)


QWEN7 = get_preset("qwen2.5-7b").shape
FULL = {"method": "full", "liger": True}
LORA = {"method": "lora", "liger": True, "lora_rank": 64, "lora_dropout": 0.05, "fused_lora": True}
# (shape, settings, measured GiB) of planned arms on one H200, the peak nvidia-smi saw (docs/performance.md's table,
# docs/bench/h200-2026-12-04/ and docs/bench/h200-long-traces/); seq_len: the cutoff for packs, the longest sample
# padded to 8 for unpacked arms.
MEASURED_H200 = [
    (QWEN15, {**FULL, "seq_len": 16384, "gradient_checkpointing": False}, 61.6),  # packs, 1 per step
    (QWEN15, {**FULL, "seq_len": 11200, "gradient_checkpointing": False, "grad_accum": 2}, 49.2),
    (QWEN15, {**FULL, "seq_len": 32768}, 36.5),  # packs, every layer checkpointed: peaks in the backward
    (QWEN15, {**FULL, "seq_len": 30136, "grad_accum": 2}, 35.5),
    (QWEN15, {**FULL, "seq_len": 30136, "grad_accum": 2, "uncheckpointed_layers": 14}, 67.3),
    (QWEN15, {**FULL, "seq_len": 30144, "grad_accum": 2, "gradient_checkpointing": False}, 99.8),
    (QWEN7, {**LORA, "seq_len": 16384, "gradient_checkpointing": False, "grad_accum": 2}, 73.5),
    (QWEN7, {**LORA, "seq_len": 15120, "gradient_checkpointing": False, "grad_accum": 8}, 68.1),
    (QWEN7, {**LORA, "seq_len": 32768, "grad_accum": 3, "uncheckpointed_layers": 10}, 70.7),
    (QWEN7, {**LORA, "seq_len": 32768, "grad_accum": 3, "uncheckpointed_layers": 11}, 74.8),
    (QWEN7, {**LORA, "seq_len": 32768, "grad_accum": 3, "uncheckpointed_layers": 26}, 127.0),
    (QWEN7, {**LORA, "seq_len": 65536, "grad_accum": 2, "uncheckpointed_layers": 10}, 128.5),
    (QWEN7, {**LORA, "seq_len": 59576, "grad_accum": 8, "uncheckpointed_layers": 10}, 106.2),
]


@pytest.mark.parametrize(("shape", "settings", "gib"), MEASURED_H200)
def test_estimate_is_within_10_percent_of_every_planned_h200_arm(shape, settings, gib):
    estimate = estimate_memory(shape, **settings)
    assert abs(estimate.peak_gib / gib - 1) <= 0.10, (estimate.peak_gib, gib, estimate.phase, estimate.breakdown())


def test_gradients_of_earlier_micro_batches_count_in_the_forward():
    one = estimate_memory(QWEN15, method="full", seq_len=16384, gradient_checkpointing=False)
    two = estimate_memory(QWEN15, method="full", seq_len=16384, gradient_checkpointing=False, grad_accum=2)
    assert one.parts["gradients"] == 0 and two.parts["gradients"] == pytest.approx(4 * QWEN15.total_params)
    checkpointed = estimate_memory(QWEN15, method="full", seq_len=32768)  # one micro-batch: late in the backward
    assert checkpointed.phase == "backward" and checkpointed.parts["gradients"] > 0


def test_breakdown_adds_up_and_names_its_phase():
    estimate = estimate_memory(QWEN15, method="full", seq_len=16384)
    assert sum(estimate.parts.values()) == pytest.approx(estimate.peak)
    assert estimate.phase in ("end of forward", "backward", "optimizer step")
    assert "weights" in estimate.breakdown()


def test_trends():
    shape = get_preset("qwen2.5-7b").shape
    base = {"method": "full", "seq_len": 16384, "world_size": 8, "zero_stage": 3}
    with_gc = estimate_memory(shape, **base).peak
    assert estimate_memory(shape, **base, gradient_checkpointing=False).peak > 2 * with_gc
    assert estimate_memory(shape, **base, liger=False).peak > with_gc + 20 * GIB  # 16k x 152k logits
    assert estimate_memory(shape, **{**base, "world_size": 16}).peak < with_gc
    assert estimate_memory(shape, **base, offload=True).peak < with_gc
    lora = estimate_memory(shape, method="lora", seq_len=16384).peak
    qlora = estimate_memory(shape, method="qlora", seq_len=16384).peak
    assert qlora < lora < estimate_memory(shape, method="full", seq_len=16384).peak
    assert estimate_memory(shape, method="dora", seq_len=16384).peak > lora
    assert estimate_memory(shape, method="lora", seq_len=16384, resize_vocab=True).peak > lora + 10 * GIB


def test_zero3_model_states_follow_deepspeeds_estimator():
    shape = get_preset("qwen2.5-72b").shape
    n = shape.total_params
    estimate = estimate_memory(shape, method="full", seq_len=1024, world_size=8, zero_stage=3)
    states = estimate.parts["weights"] + estimate.parts["gradients"] + estimate.parts["optimizer"]
    assert states == pytest.approx(18 * n / 8)
    offload = estimate_memory(shape, method="full", seq_len=1024, world_size=8, zero_stage=3, offload=True,
                              gpus_per_node=8)
    assert offload.host == pytest.approx(18 * n)


def test_without_dropout_peft_keeps_what_its_lora_a_reads():
    """PEFT's lora_A keeps its input for its weight gradient: the dropout copies where lora_dropout > 0, otherwise
    the normalised inputs of q/k/v and gate/up and down_proj's input, which r1sft.patches.fused_lora recomputes."""
    from r1sft.recipe.memory import activation_bytes_per_token_layer

    shape = get_preset("qwen2.5-7b").shape
    kept = {drop: activation_bytes_per_token_layer(shape, method="lora", liger=True, lora_dropout=drop)
            for drop in (0.0, 0.05)}
    fused = activation_bytes_per_token_layer(shape, method="lora", liger=True, fused_lora=True)
    assert kept[0.0] - fused == 2 * shape.intermediate  # down_proj's bf16 input
    assert fused < kept[0.0] < kept[0.05]
