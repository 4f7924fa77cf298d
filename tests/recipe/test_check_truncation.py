"""No truncated sample reaches training unnoticed: `r1sft check` compares the data's length bound with cutoff_len."""

from __future__ import annotations

import json

import yaml

from r1sft.recipe.check import check_recipe


def _project(tmp_path, tiny_model, max_tokens: int | None, cutoff: int):
    data = tmp_path / "data"
    data.mkdir()
    (data / "d.jsonl").write_text(json.dumps({"conversations": [{"from": "human", "value": "1+1?"},
                                                                 {"from": "gpt", "value": "2"}], "system": ""}) + "\n")
    meta = {"think": "native"} | ({"max_tokens": max_tokens} if max_tokens else {})
    (data / "dataset_info.json").write_text(json.dumps({"d": {
        "file_name": "d.jsonl", "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system"}, "r1sft": meta}}))
    recipe = tmp_path / "lora_sft.yaml"
    recipe.write_text(yaml.safe_dump({
        "model_name_or_path": str(tiny_model("tiny-qwen3")), "stage": "sft", "do_train": True,
        "finetuning_type": "lora", "lora_target": "all", "dataset": "d", "dataset_dir": "data", "template": "qwen3",
        "cutoff_len": cutoff, "output_dir": "saves/x", "per_device_train_batch_size": 1, "use_cpu": True}))
    return recipe


def test_bound_above_cutoff_is_a_problem(tmp_path, tiny_model):
    problems = check_recipe(_project(tmp_path, tiny_model, 4096, 2048), root=tmp_path)
    assert any("--max-tokens 4096 > cutoff_len 2048" in p for p in problems), problems


def test_bound_within_cutoff_passes(tmp_path, tiny_model, capsys):
    problems = check_recipe(_project(tmp_path, tiny_model, 1024, 2048), root=tmp_path)
    assert not [p for p in problems if "max-tokens" in p]
    assert "not length-filtered" not in capsys.readouterr().err


def test_unfiltered_dataset_is_reported(tmp_path, tiny_model, capsys):
    check_recipe(_project(tmp_path, tiny_model, None, 2048), root=tmp_path)
    assert "dataset 'd' was not length-filtered" in capsys.readouterr().err
