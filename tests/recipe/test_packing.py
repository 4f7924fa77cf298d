"""r1sft recipe --packing: packs per step sized from the data's measured mean length, neat packing, checked."""

from __future__ import annotations

import json

import pytest
import yaml

from r1sft.errors import R1sftError
from r1sft.recipe import RecipeRequest, plan_recipe
from r1sft.recipe.check import check_recipe
from r1sft.recipe.render import render_recipe, write_files


def _data_dir(tmp_path, mean_tokens=None, rows=1000):
    meta = {"rows": rows, **({"mean_tokens": mean_tokens} if mean_tokens else {})}
    (tmp_path / "d.jsonl").write_text(json.dumps({"conversations": [{"from": "human", "value": "q"},
                                                                      {"from": "gpt", "value": "a"}],
                                                  "system": ""}) + "\n")
    (tmp_path / "dataset_info.json").write_text(json.dumps({"d": {
        "file_name": "d.jsonl", "formatting": "sharegpt", "columns": {"messages": "conversations", "system": "system"},
        "r1sft": meta}}))
    return tmp_path


def _plan(tmp_path, **kwargs):
    request = RecipeRequest(model="qwen2.5-7b", method="lora", datasets=["d"], gpus=8, packing=True,
                            out_dir=tmp_path / "recipes", **kwargs)
    return plan_recipe(request, data_dir=tmp_path, build_tiny=False)


def test_packs_per_step_follow_the_measured_mean(tmp_path):
    plan = _plan(_data_dir(tmp_path, mean_tokens=4096.0))
    train = plan.train
    assert train["packing"] is True and train["neat_packing"] is True
    assert train["per_device_train_batch_size"] == 1
    per_pack = 16384 * 0.97 / 4096.0  # 3.88 samples in a 16k pack
    assert plan.samples_per_pack == pytest.approx(per_pack)
    assert train["gradient_accumulation_steps"] == round(96 / 8 / per_pack)  # 3 packs per GPU per step
    assert "measured mean of 4,096 tokens" in plan.summary()


def test_unmeasured_data_assumes_r1_length_and_says_so(tmp_path):
    plan = _plan(_data_dir(tmp_path))
    assert plan.samples_per_pack == pytest.approx(16384 * 0.97 / 4000)
    assert "assumed mean of 4000 tokens" in plan.summary()


def test_packed_recipe_passes_check_and_llamafactory(tmp_path):
    plan = _plan(_data_dir(tmp_path, mean_tokens=2500.0))
    sft = [p for p in write_files(render_recipe(plan)) if p.name.endswith("_sft.yaml")][0]
    text = sft.read_text()
    assert "samples_per_pack=" in text and "--packing" in text
    assert check_recipe(sft) == []
    # a hand edit that drops neat_packing lets packed samples see each other: refused
    config = yaml.safe_load(text)
    config["neat_packing"] = False
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    sft.write_text(header + "\n" + yaml.safe_dump(config))
    assert any("cross-sample contamination" in problem for problem in check_recipe(sft))


def test_packing_refuses_a_fixed_batch(tmp_path):
    with pytest.raises(R1sftError, match="--packing plans the per-device batch"):
        _plan(_data_dir(tmp_path, mean_tokens=3000.0), overrides={"gradient_accumulation_steps": 4})


def test_a_mix_keeps_the_measured_means_and_assumes_only_for_the_unmeasured(tmp_path):
    data = _data_dir(tmp_path, mean_tokens=2000.0, rows=3000)
    info = json.loads((data / "dataset_info.json").read_text())
    info["e"] = {**info["d"], "r1sft": {"rows": 1000}}  # converted without --tokenizer
    (data / "dataset_info.json").write_text(json.dumps(info))
    plan = plan_recipe(RecipeRequest(model="qwen2.5-7b", method="lora", datasets=["d", "e"], gpus=8, packing=True,
                                     out_dir=tmp_path / "recipes"), data_dir=data, build_tiny=False)
    mean = (2000 * 3000 + 4000 * 1000) / 4000  # row-weighted: 2,500
    assert plan.samples_per_pack == pytest.approx(16384 * 0.97 / mean)
    assert "measured mean of 2,500 tokens per sample; 4000 assumed for e" in plan.summary()


def test_short_samples_fill_a_pack_beyond_the_global_batch_and_it_is_said(tmp_path):
    plan = _plan(_data_dir(tmp_path, mean_tokens=157.0))
    assert plan.samples_per_pack == pytest.approx(16384 * 0.97 / 157)  # ~101: the real count, not capped
    assert any("over the global batch of 96" in w for w in plan.warnings)
