"""Recipes for the models as they are: base checkpoints, Qwen3 MoE and its 2507 variants, multi-turn data, and what
a merge recipe says when plain ``llamafactory-cli export`` would not give a model that matches training."""

from __future__ import annotations

import json

import pytest
import yaml

from r1sft.presets import get_preset, read_config, shape_from_config
from r1sft.recipe import RecipeRequest, plan_recipe
from r1sft.recipe.check import check_recipes
from r1sft.recipe.exports import LLAMA_DATE, QWEN3_HISTORY, plain_export_gaps
from r1sft.recipe.memory import estimate_memory
from r1sft.recipe.render import render_recipe, write_files
from tests.recipe.conftest import _entry


def _write(root, tmp_path, **kwargs):
    plan = plan_recipe(RecipeRequest(out_dir=tmp_path / "recipes", **kwargs), data_dir=root / "data")
    files = render_recipe(plan)
    write_files(files)
    return plan, files


def test_qwen3_moe_counts_every_expert_in_weights_and_the_routed_ones_in_flops(tiny_model):
    """The shape's counts are the parameters transformers' Qwen3-MoE class actually creates (tiny stand-in)."""
    from transformers import AutoModelForCausalLM

    folder = tiny_model("tiny-qwen3-moe")
    shape = shape_from_config(read_config(folder), get_preset("tiny-qwen3-moe").family)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert shape.total_params == sum(p.numel() for p in model.parameters())
    experts = sum(p.numel() for name, p in model.named_parameters() if ".mlp.experts." in name)
    assert experts == shape.layers * shape.experts * 3 * shape.hidden * shape.moe_intermediate
    routed = shape.layers * (shape.experts - shape.experts_per_token) * 3 * shape.hidden * shape.moe_intermediate
    assert shape.active_params == shape.total_params - routed
    real = get_preset("qwen3-30b-a3b").shape
    assert round(real.total_params / 1e9, 1) == 30.5 and int(real.active_params / 1e8) == 33  # "30.5B, 3.3B active"


def test_moe_lora_targets_attention_and_counts_what_peft_creates(tiny_model):
    from llamafactory.model.model_utils.misc import find_all_linear_modules
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    plan = plan_recipe(RecipeRequest(model="qwen3-30b-a3b", method="lora"), build_tiny=False)
    assert plan.train["lora_target"] == "q_proj,k_proj,v_proj,o_proj" and "moe_aux_loss_coef" not in plan.train
    model = AutoModelForCausalLM.from_pretrained(tiny_model("tiny-qwen3-moe"))
    # LLaMA-Factory's `all` finds the same: transformers 5 keeps experts (and the router) as fused parameters
    assert sorted(find_all_linear_modules(model, False)) == sorted(plan.train["lora_target"].split(","))
    shape = shape_from_config(read_config(tiny_model("tiny-qwen3-moe")), get_preset("tiny-qwen3-moe").family)
    peft = get_peft_model(model, LoraConfig(r=8, target_modules=plan.train["lora_target"].split(",")))
    assert sum(p.numel() for n, p in peft.named_parameters() if "lora_" in n) == shape.lora_params(8)
    full = plan_recipe(RecipeRequest(model="qwen3-30b-a3b", method="full"), build_tiny=False)
    assert full.train["moe_aux_loss_coef"] == 0.001  # the router keeps balancing its experts
    # LoRA's frozen weights are all 30.5B parameters in bf16, whatever the routing
    lora = estimate_memory(real := get_preset("qwen3-30b-a3b").shape, method="lora", seq_len=4096)
    assert lora.parts["weights"] == pytest.approx(2 * real.total_params, rel=0.01)


@pytest.mark.parametrize(("preset", "template", "thinking"), [
    ("qwen3-30b-a3b", "qwen3", True), ("qwen3-30b-a3b-thinking-2507", "qwen3", True),
    ("qwen3-30b-a3b-instruct-2507", "qwen3_nothink", None)])
def test_qwen3_variants_train_with_their_own_template(preset, template, thinking):
    train = plan_recipe(RecipeRequest(model=preset), build_tiny=False).train
    assert train["template"] == template and train.get("enable_thinking") == thinking


def test_multi_turn_data_trains_the_last_reply_unless_it_kept_earlier_reasoning(root, tmp_path):
    info = json.loads((root / "data" / "dataset_info.json").read_text())
    info["kept"] = _entry("r1sft_sample.jsonl", think="native", earlier_reasoning="keep")
    (root / "data" / "dataset_info.json").write_text(json.dumps(info))
    plan, _ = _write(root, tmp_path, model="qwen3-8b")
    assert plan.train["mask_history"] is True and plan.merge["mask_history"] is True
    plan, files = _write(root, tmp_path, model="qwen3-8b", datasets=["kept"])
    assert "mask_history" not in plan.train and plan.export_gaps == [QWEN3_HISTORY]
    assert "r1sft merge" in files[plan.sft_path] and "r1sft merge" in files[plan.merge_path]
    plan, _ = _write(root, tmp_path, model="qwen2.5-7b", datasets=["kept"])
    assert "mask_history" not in plan.train and plan.export_gaps == []  # Qwen2.5's template keeps content as it is


@pytest.mark.parametrize("preset", ["qwen2.5-7b-base", "qwen2.5-math-7b", "qwen3-8b-base"])
def test_base_presets_make_the_end_of_turn_token_the_eos(preset, root, tmp_path):
    plan, files = _write(root, tmp_path, model=preset, method="full")
    generation = json.loads(files[plan.generation_config_path])
    # Qwen's real ids: <|im_end|> stops a reply, <|endoftext|> still stops text
    assert generation["eos_token_id"] == [151645, 151643] and generation["do_sample"] is True
    train = yaml.safe_load(files[plan.sft_path])
    assert train["generation_config"] == f"{(tmp_path / 'recipes' / preset).as_posix()}/generation_config.json"
    assert train["template"] in ("qwen", "qwen3")  # LLaMA-Factory's replace_eos: <|im_end|> is the EOS in training
    lora, lora_files = _write(root, tmp_path, model=preset, method="lora")
    assert any("does not stop at <|im_end|>" in gap for gap in lora.export_gaps)
    assert "not plain llamafactory-cli export" in lora_files[lora.merge_path]
    assert check_recipes([p for p in lora_files if p.suffix == ".yaml"], root=root) == []


def test_merge_recipes_say_where_plain_export_falls_short(root, tmp_path, capsys, tiny_model):
    tiny_model("tiny-qwen3-base")  # judged by its own files below
    llama, files = _write(root, tmp_path, model="llama3.2-3b")
    assert llama.export_gaps == [LLAMA_DATE]
    assert f"# Run:      r1sft merge {llama.merge_path.as_posix()}" in files[llama.merge_path]
    capsys.readouterr()
    assert check_recipes([llama.merge_path], root=root) == []  # a note, not a problem: the recipe is valid
    assert "use `r1sft merge`, not plain llamafactory-cli export: Llama-3.2" in capsys.readouterr().err
    for preset in ("qwen2.5-7b", "qwen3-8b", "qwen3-30b-a3b", "qwen3-30b-a3b-instruct-2507"):
        plan, files = _write(root, tmp_path, model=preset)
        assert plan.export_gaps == [], preset
        assert f"# Merge:    llamafactory-cli export {plan.merge_path.as_posix()}" in files[plan.sft_path]
    nothink = plan_recipe(RecipeRequest(model="qwen3-8b", template="qwen3_nothink"), build_tiny=False)
    assert len(nothink.export_gaps) == 1 and "enable_thinking=False" in nothink.export_gaps[0]
    # a local model is judged by its own files: the tiny base stand-in's generation config stops at <|endoftext|>
    base = {"model_name_or_path": ".cache/tiny-models/tiny-qwen3-base", "template": "qwen3", "mask_history": True}
    assert [gap.split(" ")[1] for gap in plain_export_gaps(base, root)] == ["base"]
