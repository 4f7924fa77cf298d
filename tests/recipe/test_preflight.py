"""What a launch would trip on, caught by `r1sft check` and `r1sft recipe` before anything runs (issue 19): a
dataset with no rows, cutoff_len beyond the model's context, values another value switches off, a recipe planned for
GPUs this machine does not show (`--here` only)."""

from __future__ import annotations

import json

import pytest
import yaml

from r1sft.cli import main
from r1sft.errors import R1sftError
from r1sft.recipe import RecipeRequest, check_recipes, plan_recipe, render_recipe, write_files
from r1sft.recipe.data import dataset_rows
from r1sft.recipe.machine import gpu_problem, planned_gpus, rerender
from tests.recipe.conftest import _entry, make_root


@pytest.fixture
def empty_root(tmp_path):
    """A root whose data/ also registers `empty` (a converter's 0-row output) and `blank` (no r1sft block)."""
    root = make_root(tmp_path / "root")
    data = root / "data"
    (data / "empty.jsonl").write_text("", encoding="utf-8")
    (data / "blank.jsonl").write_text("\n\n", encoding="utf-8")
    info = json.loads((data / "dataset_info.json").read_text())
    info["empty"] = _entry("empty.jsonl", rows=0)
    info["blank"] = _entry("blank.jsonl")
    (data / "dataset_info.json").write_text(json.dumps(info))
    return root


def _recipe(root, tmp_path, **request):
    plan = plan_recipe(RecipeRequest(out_dir=tmp_path / "rec", **request), data_dir=root / "data")
    write_files(render_recipe(plan))
    return plan.sft_path


def _edit(path, **changes):
    text = path.read_text()
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    path.write_text(header + yaml.safe_dump({**yaml.safe_load(text), **changes}, sort_keys=False))
    return path


# case 2: a registered dataset with no rows -------------------------------------------------------------------------

def test_rows_come_from_the_converters_count_else_from_the_file(empty_root):
    data = empty_root / "data"
    info = json.loads((data / "dataset_info.json").read_text())
    assert dataset_rows(info["empty"], data) == 0
    assert dataset_rows(info["blank"], data) == 0  # only blank lines: nothing to train on
    assert dataset_rows(info["r1sft_sample"], data) == 1  # no count recorded: peeked, at least one row
    (data / "arr.json").write_text(" [ \n ] ")
    assert dataset_rows({"file_name": "arr.json"}, data) == 0
    assert dataset_rows({"file_name": "missing.jsonl"}, data) is None


@pytest.mark.parametrize("name", ["empty", "blank"])
def test_make_recipe_refuses_a_dataset_with_no_rows(empty_root, tmp_path, name):
    with pytest.raises(R1sftError, match=f"dataset '{name}' has no rows .*{name}.jsonl.*leave it out") as caught:
        _recipe(empty_root, tmp_path, model="qwen3-8b", datasets=["r1sft_sample", name])
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "rec").exists()


def test_check_refuses_a_recipe_whose_dataset_has_no_rows(empty_root, tmp_path, capsys):
    recipe = _edit(_recipe(empty_root, tmp_path, model="qwen3-8b"), dataset="empty")
    capsys.readouterr()
    (line,) = check_recipes([recipe], root=empty_root)
    assert "dataset 'empty' has no rows" in line and "LLaMA-Factory would fail loading it" in line
    assert capsys.readouterr().err == ""  # the one line: no note about the lengths of no rows


# case 3: cutoff_len beyond the model's context ---------------------------------------------------------------------

def test_check_refuses_cutoff_beyond_the_context_window_as_make_recipe_does(root, tmp_path, capsys, monkeypatch):
    recipe = _edit(_recipe(root, tmp_path, model="qwen3-8b"), cutoff_len=100000)
    (line,) = check_recipes([recipe], root=root)
    assert line == (f"{recipe}: cutoff_len 100000 exceeds Qwen/Qwen3-8B's context window of 40960 tokens: set "
                    "cutoff_len: 40960 or less (or rope_scaling: yarn to stretch the context)")
    with pytest.raises(R1sftError, match="CUTOFF=100000 exceeds qwen3-8b's context window of 40960"):
        plan_recipe(RecipeRequest(model="qwen3-8b", cutoff=100000), data_dir=root / "data")
    monkeypatch.setattr("r1sft.paths.REPO_ROOT", root)
    assert main(["check", str(recipe)]) == 2
    assert capsys.readouterr().out.splitlines() == [line]
    assert check_recipes([_edit(recipe, rope_scaling="yarn")], root=root) == []  # LLaMA-Factory stretches it


def test_a_local_models_context_is_read_from_its_config(root, tmp_path):
    recipe = _edit(_recipe(root, tmp_path, model="tiny-qwen3"), cutoff_len=5000)  # the tiny model's is 4096
    (line,) = check_recipes([recipe], root=root)
    assert "cutoff_len 5000 exceeds .cache/tiny-models/tiny-qwen3's context window of 4096 tokens" in line


# case 4: values another value switches off -------------------------------------------------------------------------

def test_set_save_steps_on_a_recipe_that_saves_nothing_implies_saving_every_n_steps(root):
    plan = plan_recipe(RecipeRequest(model="tiny-qwen3", overrides={"save_steps": 2}), data_dir=root / "data")
    assert plan.train["save_strategy"] == "steps" and plan.train["save_steps"] == 2
    assert plan.why["save_strategy"] == "save_steps is set on the command line"
    plan = plan_recipe(RecipeRequest(model="tiny-qwen3", overrides={"num_train_epochs": 2.0}), data_dir=root / "data")
    assert "max_steps" not in plan.train  # epochs asked for: the tiny preset's step cap would cancel them


@pytest.mark.parametrize(("changes", "expected"), [
    ({"save_steps": 2}, 'save_steps 2 has no effect with save_strategy: "no"'),
    ({"eval_steps": 10}, 'eval_steps 10 has no effect with eval_strategy: "no"'),
    ({"use_unsloth_gc": True}, "use_unsloth_gc has no effect with disable_gradient_checkpointing: true"),
])
def test_check_names_a_value_another_one_switches_off(root, tmp_path, changes, expected):
    recipe = _edit(_recipe(root, tmp_path, model="tiny-qwen3"), **changes)
    (line,) = check_recipes([recipe], root=root)
    assert expected in line


# case 1 (check --here): GPUs planned against GPUs shown ------------------------------------------------------------

GPU_HEADER = {"preset": "qwen3-8b", "gpus": "8", "nodes": "1", "global_batch": "96"}
TEXT = "#           (or: make recipe MODEL=qwen3-8b METHOD=lora GPUS=8)\n"


def test_the_gpus_a_recipe_plans_come_from_its_header_or_its_precision():
    assert planned_gpus({"bf16": True}, GPU_HEADER) == 8
    assert planned_gpus({"bf16": True, "use_cpu": True}, GPU_HEADER) == 0
    assert planned_gpus({"bf16": True}, {}) == 1 and planned_gpus({}, {}) == 0
    assert rerender(TEXT, 0) == "make recipe MODEL=qwen3-8b METHOD=lora GPUS=0"


@pytest.mark.parametrize(("visible", "nproc", "expected"), [
    (0, None, "planned for 8 GPUs but this machine shows none (nvidia-smi, CUDA_VISIBLE_DEVICES): re-render it for "
              "the CPU: make recipe MODEL=qwen3-8b METHOD=lora GPUS=0"),
    (2, None, "planned for 8 GPUs but this machine shows 2: re-render it for them: make recipe MODEL=qwen3-8b "
              "METHOD=lora GPUS=2 (or NPROC_PER_NODE=2 runs it as it is, with fewer samples per step)"),
    (2, "4", "NPROC_PER_NODE=4 but this machine shows 2 GPUs: set NPROC_PER_NODE=2 or less"),
    (2, "2", None),  # the user's own choice of processes: the launcher warns about the batch
    (8, None, None),
])
def test_a_machine_with_fewer_gpus_than_planned_is_refused_with_the_fix(visible, nproc, expected):
    assert gpu_problem({"bf16": True}, GPU_HEADER, TEXT, visible, nproc) == expected


def test_plain_check_judges_a_gpu_recipe_anywhere_and_here_judges_this_machine(root, tmp_path, monkeypatch):
    recipe = _recipe(root, tmp_path, model="tiny-qwen3", gpus=1)
    assert check_recipes([recipe], root=root) == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    (line,) = check_recipes([recipe], root=root, here=True)
    assert line.endswith("shows none (nvidia-smi, CUDA_VISIBLE_DEVICES): re-render it for the CPU: make recipe "
                         "MODEL=tiny-qwen3 METHOD=lora GPUS=0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert check_recipes([recipe], root=root, here=True) == []


def test_a_global_batch_that_does_not_split_names_two_multiples():
    with pytest.raises(R1sftError, match=r"use a multiple of 3 \(e\.g\. 3 or 6\)"):
        plan_recipe(RecipeRequest(model="qwen3-8b", gpus=3, global_batch=2), build_tiny=False)
    with pytest.raises(R1sftError, match=r"use a multiple of 8 \(e\.g\. 8 or 16\)"):
        plan_recipe(RecipeRequest(model="qwen3-8b", gpus=8, global_batch=4), build_tiny=False)
    with pytest.raises(R1sftError, match=r"use a multiple of 8 \(e\.g\. 96 or 104\)"):
        plan_recipe(RecipeRequest(model="qwen3-8b", gpus=8, global_batch=100), build_tiny=False)
