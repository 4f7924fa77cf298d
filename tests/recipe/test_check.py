"""`r1sft check`: one precise line per problem, non-zero exit; good recipes pass."""

from __future__ import annotations

import json

import pytest
import yaml

from r1sft.cli import main
from r1sft.recipe import RecipeRequest, check_recipes, plan_recipe, render_recipe, write_files
from tests.recipe.conftest import THOUGHT_TOKENS


@pytest.fixture
def recipes(root, tmp_path):
    """A freshly rendered qwen2.5-7b LoRA pair (stratos data, special tokens) and a full recipe, in tmp_path."""
    out = {}
    for method, datasets in (("lora", ["stratos"]), ("full", None)):
        plan = plan_recipe(RecipeRequest(model="qwen2.5-7b", method=method, datasets=datasets,
                                         out_dir=tmp_path), data_dir=root / "data")
        write_files(render_recipe(plan))
        out[method] = plan.sft_path
        if plan.merge_path:
            out["merge"] = plan.merge_path
    return out


def _edit(path, **changes):
    """Rewrite a recipe with keys changed (None removes), keeping its header comments."""
    text = path.read_text()
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    args = yaml.safe_load(text)
    for key, value in changes.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = value
    path.write_text(header + yaml.safe_dump(args, sort_keys=False))
    return path


def test_fresh_recipes_pass(recipes, root):
    assert check_recipes(list(recipes.values()), root=root) == []


def test_misspelt_key_is_named_and_the_cli_exits_nonzero(recipes, root, capsys, monkeypatch):
    text = recipes["lora"].read_text().replace("lora_rank: 64", "lora_rnak: 64")
    recipes["lora"].write_text(text)
    assert check_recipes([recipes["lora"]], root=root) == [
        f"{recipes['lora']}: unknown key 'lora_rnak' (did you mean 'lora_rank'?): not a LLaMA-Factory 0.9.5 "
        "training argument"
    ]
    monkeypatch.setattr("r1sft.paths.REPO_ROOT", root)
    assert main(["check", str(recipes["lora"])]) == 2
    out = capsys.readouterr().out
    assert "unknown key 'lora_rnak' (did you mean 'lora_rank'?)" in out


def test_cli_passes_good_recipes(recipes, root, capsys, monkeypatch):
    monkeypatch.setattr("r1sft.paths.REPO_ROOT", root)
    assert main(["check", str(recipes["full"])]) == 0
    assert f"{recipes['full']}: ok" in capsys.readouterr().out


def test_parser_errors_are_reported_in_llamafactorys_words(recipes, root):
    _edit(recipes["full"], use_dora=True)
    (line,) = check_recipes([recipes["full"]], root=root)
    assert "LLaMA-Factory rejects it: `use_dora` is only valid for LoRA training." in line


def test_wrong_types_are_caught(recipes, root):
    _edit(recipes["full"], learning_rate="1e-5 please", lora_rank="64")
    problems = check_recipes([recipes["full"]], root=root)
    assert any("'learning_rate' is '1e-5 please' (str), expected float" in p for p in problems)
    assert any("'lora_rank' is '64' (str), expected int" in p for p in problems)


def test_dict_fields_take_a_mapping_but_not_elsewhere(recipes, root):
    # HfArgumentParser narrows `dict | str | None` to str for its command line; LLaMA-Factory's YAML may hold a dict
    assert yaml.safe_load(recipes["full"].read_text())["accelerator_config"] == {"non_blocking": True}
    assert check_recipes([recipes["full"]], root=root) == []
    _edit(recipes["full"], logging_steps={"every": 10})
    (line,) = check_recipes([recipes["full"]], root=root)
    assert "'logging_steps' is {'every': 10} (dict), expected float" in line


def test_template_must_exist_and_match_the_model(recipes, root):
    _edit(recipes["full"], template="qwen25")
    (line,) = check_recipes([recipes["full"]], root=root)
    assert line.endswith("template 'qwen25' is not a LLaMA-Factory 0.9.5 template (did you mean 'qwen'?)")
    _edit(recipes["full"], template="llama3")
    (line,) = check_recipes([recipes["full"]], root=root)
    assert "template 'llama3' does not match Qwen/Qwen2.5-7B-Instruct, a qwen2.5 model: use qwen" in line


def test_tiny_model_family_comes_from_its_config(root, tmp_path):
    plan = plan_recipe(RecipeRequest(model="tiny-llama3.2", out_dir=tmp_path), data_dir=root / "data")
    write_files(render_recipe(plan))
    _edit(plan.sft_path, template="qwen3")
    problems = check_recipes([plan.sft_path], root=root)
    assert any("a llama3.2 model: use llama3" in p for p in problems)
    _edit(plan.sft_path, template="llama3", model_name_or_path=".cache/tiny-models/tiny-nothing")
    assert any("model folder .cache/tiny-models/tiny-nothing has no config.json" in p
               for p in check_recipes([plan.sft_path], root=root))


def test_datasets_must_be_registered_with_files(recipes, root):
    _edit(recipes["full"], dataset="r1sft_sample,nope,ghost")
    problems = check_recipes([recipes["full"]], root=root)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "dataset 'nope' is not registered in data/dataset_info.json",
        f"dataset 'ghost': its file {root / 'data' / 'ghost.jsonl'} does not exist",
    ]


def test_special_tokens_the_data_needs(recipes, root):
    _edit(recipes["lora"], add_special_tokens=None)
    problems = check_recipes([recipes["lora"]], root=root)
    assert any(f"the data needs special tokens {','.join(THOUGHT_TOKENS)}" in p for p in problems)
    # and the sibling merge recipe no longer matches the training recipe
    assert any(p.startswith(str(recipes["merge"])) and "merging fails with a size mismatch" in p for p in problems)


def test_deepspeed_file_must_exist_and_be_json(recipes, root, tmp_path):
    _edit(recipes["full"], deepspeed="ds_configs/z9.json")
    assert check_recipes([recipes["full"]], root=root) == [
        f"{recipes['full']}: deepspeed config ds_configs/z9.json does not exist"
    ]
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    _edit(recipes["full"], deepspeed=str(broken))
    (line,) = check_recipes([recipes["full"]], root=root)
    assert f"deepspeed config {broken} is not valid JSON" in line


def test_global_batch_arithmetic(recipes, root):
    _edit(recipes["full"], gradient_accumulation_steps=6)
    assert check_recipes([recipes["full"]], root=root) == [
        f"{recipes['full']}: per_device_train_batch_size 1 x gradient_accumulation_steps 6 x 8 GPUs x 1 node = 48, "
        "but the header plans a global batch of 96"
    ]


def test_cpu_recipe_rules(root, tmp_path):
    plan = plan_recipe(RecipeRequest(model="tiny-qwen3", out_dir=tmp_path), data_dir=root / "data")
    write_files(render_recipe(plan))
    _edit(plan.sft_path, use_cpu=None, bf16=True, enable_liger_kernel=True)
    problems = [p.split(": ", 1)[1] for p in check_recipes([plan.sft_path], root=root)]
    assert "bf16: true on a CPU recipe (gpus=0) fails without use_cpu: true" in problems
    assert "enable_liger_kernel: true on a CPU recipe (gpus=0): liger needs a CUDA GPU" in problems


def test_merge_must_match_its_training_recipe(recipes, root):
    _edit(recipes["merge"], adapter_name_or_path="saves/elsewhere", template="qwen3", quantization_bit=4)
    problems = check_recipes([recipes["lora"], recipes["merge"]], root=root)
    merge = str(recipes["merge"])
    assert f"{merge}: quantization_bit in a merge recipe: never merge an adapter into a quantized model; remove it" \
        in problems
    assert f"{merge}: template qwen3 differs from {recipes['lora']}'s qwen" in problems
    assert f"{merge}: adapter_name_or_path saves/elsewhere is not {recipes['lora']}'s output_dir " \
           "saves/qwen2.5-7b/lora/sft" in problems
    assert any("template 'qwen3' does not match" in p for p in problems)


def test_merge_alone_is_checked_against_its_sibling(recipes, root):
    _edit(recipes["merge"], model_name_or_path="Qwen/Qwen3-8B")
    problems = check_recipes([recipes["merge"]], root=root)
    assert any("model_name_or_path Qwen/Qwen3-8B differs from" in p for p in problems)


def test_unknown_export_key_and_broken_yaml(recipes, root, tmp_path):
    _edit(recipes["merge"], export_sise=5)
    problems = check_recipes([recipes["merge"]], root=root)
    assert any("unknown key 'export_sise' (did you mean 'export_size'?): not a LLaMA-Factory 0.9.5 export" in p
               for p in problems)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name_or_path: [unclosed\n")
    (line,) = check_recipes([bad], root=root)
    assert line.startswith(f"{bad}: not valid YAML")
    assert check_recipes([tmp_path / "missing.yaml"], root=root) == [f"{tmp_path / 'missing.yaml'}: no such file"]


def test_check_does_not_leave_deepspeed_switched_on(recipes, root):
    from transformers.integrations import is_deepspeed_zero3_enabled

    assert json.loads((root / "ds_configs" / "z3.json").read_text())["zero_optimization"]["stage"] == 3
    assert check_recipes([recipes["full"]], root=root) == []
    assert not is_deepspeed_zero3_enabled()
