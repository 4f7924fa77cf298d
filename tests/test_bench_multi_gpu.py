"""`make bench`'s multi-GPU and offloaded cases plan on a machine without GPUs: the processes torchrun starts, the
split of each trace and the patch switches the planned arm runs with (running them needs the GPUs:
docs/performance.md)."""

from __future__ import annotations

import json
import sys

import pytest

from r1sft.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))

from benchlib import arms  # noqa: E402
from benchlib.cases import CASES, DEFAULT_CASES, MULTI_GPU, OFFLOADED  # noqa: E402
from benchlib.synth import model_config, shape_spec  # noqa: E402


def _planned_arm(tmp_path, case, tiny_model, gpu_mem):
    from r1sft.presets import get_preset

    preset = get_preset(case.preset)
    tiny_model(f"tiny-{preset.family.name}")  # the bench's configs start from the tiny model's
    model_config(shape_spec(preset.family.name, preset.shape)).save_pretrained(tmp_path / "model")
    (tmp_path / "dataset_info.json").write_text(json.dumps({"bench": {
        "file_name": "bench.jsonl", "formatting": "sharegpt", "columns": {"messages": "conversations"},
        "r1sft": {"rows": 256, "mean_tokens": case.median}}}))
    row = {"conversations": [{"from": "human", "value": "1 + 1?"}, {"from": "gpt", "value": "2"}], "system": ""}
    (tmp_path / "bench.jsonl").write_text(json.dumps(row) + "\n")  # planning reads the counts; a row keeps it non-empty
    ctx = arms.Context(case=case, model_dir=tmp_path / "model", dataset="bench", data_dir=tmp_path, work=tmp_path,
                       gpu_mem_gib=gpu_mem)
    return arms.build("planned", ctx)


@pytest.mark.parametrize("name", sorted(MULTI_GPU))
def test_multi_gpu_cases_plan_their_split(tmp_path, name, tiny_model):
    case = CASES[name]
    arm = _planned_arm(tmp_path, case, tiny_model, 139.8)
    config, split = arm.config, case.sequence_parallel
    data_parallel = case.gpus // split
    assert config["per_device_train_batch_size"] * config["gradient_accumulation_steps"] * data_parallel == \
        case.samples_per_step
    assert arm.env.get("R1SFT_SEQUENCE_PARALLEL", "1") == str(split)
    assert arm.memory_estimate.peak_gib < 139.8 * 0.9
    assert name not in DEFAULT_CASES  # `make bench` on one GPU does not try them


@pytest.mark.parametrize("name", sorted(OFFLOADED))
def test_offloaded_cases_plan_offloaded_checkpointing_on_an_80gb_gpu(tmp_path, name, tiny_model):
    arm = _planned_arm(tmp_path, CASES[name], tiny_model, 80.0)
    assert arm.config["use_unsloth_gc"] is True and arm.env.get("R1SFT_OFFLOADED_CHECKPOINTING") == "on"
    assert arm.memory_estimate.peak_gib < 80 * 0.9 and arm.memory_estimate.host > 0
    assert name not in DEFAULT_CASES


def test_the_offloaded_case_tiles_its_mlp_on_a_48gb_gpu(tmp_path, tiny_model):
    arm = _planned_arm(tmp_path, CASES["qwen2.5-7b-lora-128k"], tiny_model, 48.0)
    assert arm.env.get("R1SFT_TILED_MLP") == "8192" and arm.config["use_unsloth_gc"] is True
    assert arm.memory_estimate.peak_gib < 48 * 0.9
