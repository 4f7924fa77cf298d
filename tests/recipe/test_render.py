"""Every preset x method renders, and LLaMA-Factory's own parser and `r1sft check` accept the result."""

from __future__ import annotations

import os
import re

import pytest
import yaml

from r1sft.errors import R1sftError
from r1sft.presets import METHODS, presets
from r1sft.recipe import RecipeRequest, check_recipes, plan_recipe, render_recipe, write_files
from r1sft.recipe.render import yaml_scalar
from tests.recipe.conftest import THOUGHT_TOKENS

COMBOS = [(name, method) for name in presets() for method in METHODS]



def _render(root, tmp_path, **kwargs):
    plan = plan_recipe(RecipeRequest(out_dir=tmp_path / "recipes", **kwargs), data_dir=root / "data")
    files = render_recipe(plan)
    write_files(files)
    return plan, files


def _lf_parse(args: dict, root, export: bool):
    """LLaMA-Factory's own parse functions, as `llamafactory-cli train/export` call them (extra keys refused)."""
    import torch
    from llamafactory.hparams.parser import _parse_infer_args, _parse_train_args
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    assert not os.environ.get("ALLOW_EXTRA_ARGS")
    args = dict(args)
    if "deepspeed" in args:  # recipes name it relative to the project root, where run_sft.sh launches
        args["deepspeed"] = str(root / args["deepspeed"])
    if args.get("bf16") and not torch.cuda.is_available():
        args["use_cpu"] = True  # transformers refuses bf16 without a GPU unless told; keys and values are the same
    try:
        return _parse_infer_args(args) if export else _parse_train_args(args)
    finally:
        unset_hf_deepspeed_config()


@pytest.mark.parametrize(("preset", "method"), COMBOS)
def test_every_preset_and_method_renders_and_passes_the_parser_and_check(preset, method, root, tmp_path):
    plan, files = _render(root, tmp_path, model=preset, method=method)
    recipes = [path for path in files if path.suffix == ".yaml"]
    texts = [files[path] for path in recipes]
    train = yaml.safe_load(texts[0])
    model_args, data_args, training_args, finetuning_args, _ = _lf_parse(train, root, export=False)
    assert finetuning_args.finetuning_type == ("full" if method == "full" else "lora")
    assert data_args.template == plan.template
    if method in ("lora", "qlora", "dora"):
        assert len(recipes) == 2
        merge = yaml.safe_load(texts[1])
        model_args, *_ = _lf_parse(merge, root, export=True)
        assert model_args.export_dir and model_args.quantization_bit is None
    else:
        assert len(recipes) == 1
    # a base model's full SFT saves the generation config written beside the recipe, with its end-of-turn EOS
    assert (plan.preset.base and method == "full") == (len(files) > len(recipes)) == ("generation_config" in train)
    assert check_recipes(recipes, root=root) == []


@pytest.mark.parametrize(("preset", "method"), [c for c in COMBOS if not presets()[c[0]].tiny])
def test_eight_gpus_default_batch_is_exactly_96(preset, method):
    plan = plan_recipe(RecipeRequest(model=preset, method=method, gpus=8))
    train = plan.train
    assert train["per_device_train_batch_size"] * train["gradient_accumulation_steps"] * 8 == 96
    assert train["bf16"] is True and train["enable_liger_kernel"] is True and train["flash_attn"] == "sdpa"
    assert train["dataloader_pin_memory"] is True and "use_cpu" not in train


@pytest.mark.parametrize("preset", [n for n, p in presets().items() if not p.tiny and p.params_billion >= 7])
def test_full_sft_of_7b_and_larger_uses_zero3(preset):
    plan = plan_recipe(RecipeRequest(model=preset, method="full", gpus=8))
    assert plan.train["deepspeed"] in ("ds_configs/z3.json", "ds_configs/z3_offload.json")


def test_full_sft_of_72b_on_8x80_offloads():
    plan = plan_recipe(RecipeRequest(model="qwen2.5-72b", method="full", gpus=8, gpu_mem=80))
    assert plan.train["deepspeed"] == "ds_configs/z3_offload.json"
    assert plan.memory.host > 0 and "host RAM" in plan.summary()


def test_one_gpu_that_fits_uses_no_deepspeed():
    plan = plan_recipe(RecipeRequest(model="qwen2.5-1.5b", method="full", gpus=1))
    assert "deepspeed" not in plan.train
    assert any("1.8x" in reason for reason in plan.reasons)


def test_one_gpu_lora_trains_without_deepspeed_and_zero2_accumulates_in_fp32(root):
    import json

    # under r1sft train (fused LoRA layers, bf16 inputs) fp32 adapters under autocast beat ZeRO-2's bf16 mode on one
    # GPU (H100, docs/bench/h100-fused-lora/7b-linears-only.md)
    lora = plan_recipe(RecipeRequest(model="qwen2.5-7b", method="lora", gpus=1))
    assert "deepspeed" not in lora.train
    assert any(reason.startswith("no DeepSpeed: one GPU") for reason in lora.reasons)
    # ZeRO-2, where asked for, keeps gradients in bf16 between micro-batches unless told otherwise; the recipes
    # accumulate up to dozens of them, so the config asks for fp32
    z2 = plan_recipe(RecipeRequest(model="qwen2.5-7b", method="lora", gpus=1, deepspeed="z2"))
    assert z2.train["deepspeed"] == "ds_configs/z2.json"
    config = json.loads((root / "ds_configs" / "z2.json").read_text())
    assert config["data_types"]["grad_accum_dtype"] == "fp32" and config["bf16"]["enabled"] == "auto"
    for method in ("qlora", "dora"):
        assert "deepspeed" not in plan_recipe(RecipeRequest(model="qwen2.5-7b", method=method, gpus=1)).train
    assert "deepspeed" not in plan_recipe(RecipeRequest(model="qwen2.5-7b", method="lora", gpus=8)).train


def test_tiny_recipe_trains_on_cpu(root, tmp_path):
    plan, files = _render(root, tmp_path, model="tiny-qwen3")
    train = yaml.safe_load(next(iter(files.values())))
    assert train["use_cpu"] is True and "bf16" not in train and "deepspeed" not in train
    assert train["enable_liger_kernel"] is False and train["dataloader_pin_memory"] is False
    assert train["cutoff_len"] == 1024 and train["max_steps"] <= 50
    assert train["per_device_train_batch_size"] * train["gradient_accumulation_steps"] == 8
    assert train["model_name_or_path"] == ".cache/tiny-models/tiny-qwen3"
    assert (root / train["model_name_or_path"] / "config.json").is_file()  # built on first use
    assert plan.preset.shape.vocab != presets()["qwen3-8b"].shape.vocab  # planned from the real config.json


def test_recipe_layout_header_and_comments(root, tmp_path):
    plan, files = _render(root, tmp_path, model="qwen3-8b", method="lora", gpus=8)
    text = files[plan.sft_path]
    sections = re.findall(r"^### (\w+)$", text, re.MULTILINE)
    assert sections == ["model", "method", "dataset", "output", "train"]
    assert "r1sft recipe qwen3-8b --method lora --gpus 8" in text
    assert "bash run_sft.sh" in text and "llamafactory-cli export" in text
    assert re.search(r"^gradient_accumulation_steps: 12 +# 1 per device x GA 12 x 8 GPUs = 96", text, re.MULTILINE)
    assert "memory ~" in text and "GiB per GPU" in text
    assert "DATASET=" in text  # how to point it at real data
    merge = files[plan.merge_path]
    assert re.findall(r"^### (\w+)$", merge, re.MULTILINE) == ["model", "export"]


def test_special_tokens_go_into_train_and_merge(root, tmp_path):
    plan, files = _render(root, tmp_path, model="qwen2.5-7b", method="lora", datasets=["stratos"])
    train, merge = (yaml.safe_load(t) for t in files.values())
    assert train["add_special_tokens"] == ",".join(THOUGHT_TOKENS) == merge["add_special_tokens"]
    assert check_recipes(list(files), root=root) == []
    with pytest.raises(R1sftError, match="QLoRA cannot resize"):
        _render(root, tmp_path, model="qwen2.5-7b", method="qlora", datasets=["stratos"])


def test_unregistered_dataset_is_an_error(root, tmp_path):
    with pytest.raises(R1sftError, match="'nope' is not registered"):
        _render(root, tmp_path, model="qwen3-8b", datasets=["nope"])


def test_templates_think_off_and_overrides(root, tmp_path):
    # THINK=off: Qwen3's reasoning template with the empty think block in the prompt, as Qwen3 serves no-think
    assert plan_recipe(RecipeRequest(model="qwen3-8b", think="off")).train["template"] == "qwen3"
    assert plan_recipe(RecipeRequest(model="qwen3-8b", think="off")).train["enable_thinking"] is False
    assert plan_recipe(RecipeRequest(model="qwen3-8b", template="qwen3_nothink")).train["template"] == "qwen3_nothink"
    assert "enable_thinking" not in plan_recipe(RecipeRequest(model="qwen3-8b", template="qwen3_nothink")).train
    # Qwen3-2507: Thinking has no no-think mode; Instruct trains plain ChatML (qwen3 would add think blocks)
    with pytest.raises(R1sftError, match="no no-think template"):
        plan_recipe(RecipeRequest(model="qwen3-30b-a3b-thinking-2507", think="off"))
    assert plan_recipe(RecipeRequest(model="qwen3-30b-a3b-instruct-2507")).train["template"] == "qwen3_nothink"
    with pytest.raises(R1sftError, match="does not match"):
        plan_recipe(RecipeRequest(model="qwen3-30b-a3b-instruct-2507", template="qwen3"))
    assert plan_recipe(RecipeRequest(model="llama3.2-3b")).train["template"] == "llama3"
    assert plan_recipe(RecipeRequest(model="qwen2.5-7b")).train["template"] == "qwen"
    with pytest.raises(R1sftError, match="no no-think template"):
        plan_recipe(RecipeRequest(model="qwen2.5-7b", think="off"))
    with pytest.raises(R1sftError, match="does not match"):
        plan_recipe(RecipeRequest(model="llama3.2-3b", template="qwen"))


def test_defaults_per_method():
    rates = {m: plan_recipe(RecipeRequest(model="qwen3-8b", method=m)).train["learning_rate"] for m in METHODS}
    assert rates == {"lora": 1e-4, "qlora": 2e-4, "dora": 1e-4, "full": 1e-5}
    lora = plan_recipe(RecipeRequest(model="qwen3-8b")).train
    assert (lora["lora_rank"], lora["lora_alpha"], lora["lora_dropout"], lora["lora_target"]) == (64, 128, 0.0, "all")
    assert lora["num_train_epochs"] == 3.0 and lora["lr_scheduler_type"] == "cosine" and lora["warmup_steps"] == 0.1
    assert lora["cutoff_len"] == 16384 and lora["plot_loss"] is True
    qlora = plan_recipe(RecipeRequest(model="qwen3-8b", method="qlora")).train
    assert (qlora["quantization_bit"], qlora["quantization_method"]) == (4, "bnb")
    assert plan_recipe(RecipeRequest(model="qwen3-8b", method="dora")).train["use_dora"] is True


def test_set_overrides_land_in_their_section(root, tmp_path):
    overrides = {"learning_rate": 5e-5, "max_grad_norm": 0.2, "mask_history": True, "per_device_train_batch_size": 2}
    plan, files = _render(root, tmp_path, model="qwen3-8b", gpus=8, cutoff=4096, overrides=overrides)
    text = files[plan.sft_path]
    train = yaml.safe_load(text)
    assert train["learning_rate"] == 5e-5 and train["gradient_accumulation_steps"] == 6
    sections = dict(re.findall(r"^### (\w+)\n(.*?)(?=^### |\Z)", text, re.MULTILINE | re.DOTALL))
    assert "max_grad_norm: 0.2" in sections["train"] and "mask_history: true" in sections["dataset"]
    assert "--set max_grad_norm=0.2" in text
    with pytest.raises(R1sftError, match="did you mean 'lora_rank'"):
        plan_recipe(RecipeRequest(model="qwen3-8b", overrides={"lora_rnak": 8}))
    with pytest.raises(R1sftError, match="expected int"):
        plan_recipe(RecipeRequest(model="qwen3-8b", overrides={"lora_rank": "big"}))


def test_global_batch_that_does_not_split_names_the_numbers():
    with pytest.raises(R1sftError, match=r"GLOBAL_BATCH=96 cannot be split over 7 GPUs x 1 node = 7 ranks.*91 or 98"):
        plan_recipe(RecipeRequest(model="qwen3-8b", gpus=7))
    with pytest.raises(R1sftError, match=r"per_device_train_batch_size 2 x gradient_accumulation_steps 5 x 8 ranks"):
        plan_recipe(RecipeRequest(model="qwen3-8b", overrides={"per_device_train_batch_size": 2,
                                                                "gradient_accumulation_steps": 5}))


def test_cutoff_is_capped_and_checked():
    assert plan_recipe(RecipeRequest(model="tiny-qwen3", cutoff=4096)).train["cutoff_len"] == 4096
    with pytest.raises(R1sftError, match="exceeds qwen2.5-7b's context window of 32768.*rope_scaling=yarn"):
        plan_recipe(RecipeRequest(model="qwen2.5-7b", cutoff=65536))
    # past the context with RoPE scaling, up to 4x (LLaMA-Factory computes the factor from cutoff_len)
    yarn = plan_recipe(RecipeRequest(model="qwen2.5-7b", method="lora", gpus=1, gpu_mem=140, cutoff=65536,
                                     overrides={"rope_scaling": "yarn"}), build_tiny=False)
    assert yarn.train["cutoff_len"] == 65536 and yarn.train["rope_scaling"] == "yarn"
    with pytest.raises(R1sftError, match="context window of 131072"):
        plan_recipe(RecipeRequest(model="qwen2.5-7b", cutoff=262144, overrides={"rope_scaling": "yarn"}))


def test_gradient_checkpointing_only_when_needed():
    short = plan_recipe(RecipeRequest(model="qwen2.5-1.5b", method="lora", cutoff=2048, gpus=8))
    assert short.train["disable_gradient_checkpointing"] is True
    long = plan_recipe(RecipeRequest(model="qwen2.5-7b", method="full", gpus=8))
    assert long.train["disable_gradient_checkpointing"] is False
    assert "without it" in long.why["disable_gradient_checkpointing"]


def test_output_is_deterministic(root, tmp_path):
    _, first = _render(root, tmp_path, model="qwen2.5-72b", method="full")
    _, second = _render(root, tmp_path, model="qwen2.5-72b", method="full")
    assert first == second
    assert not re.search(r"20\d\d-\d\d-\d\d|\d\d:\d\d:\d\d", "".join(first.values()))


def test_template_error_names_the_template_and_the_missing_value(tmp_path):
    plan = plan_recipe(RecipeRequest(model="qwen3-8b"))
    (tmp_path / "sft.yaml.j2").write_text("# {{ title }}\n{{ e.line('model_name_or_path') }}\nx: {{ warmup }}\n")
    (tmp_path / "merge.yaml.j2").write_text("{{ e.line('no_such_value') }}\n")
    with pytest.raises(R1sftError, match=r"sft\.yaml\.j2: line 3: 'warmup' is undefined"):
        render_recipe(plan, templates_dir=tmp_path)
    (tmp_path / "sft.yaml.j2").write_text("{{ e.line('no_such_value') }}\n")
    with pytest.raises(R1sftError, match=r"sft\.yaml\.j2.*'no_such_value' is undefined"):
        render_recipe(plan, templates_dir=tmp_path)


def test_a_template_that_drops_a_value_is_caught(tmp_path):
    plan = plan_recipe(RecipeRequest(model="qwen3-8b", method="full"))
    (tmp_path / "sft.yaml.j2").write_text("{{ e.line('model_name_or_path') }}\n")
    with pytest.raises(R1sftError, match="never prints"):
        render_recipe(plan, templates_dir=tmp_path)


@pytest.mark.parametrize("value", [1e-5, 2e-4, 1e-3, 0.05, 0.1, 3.0, 180000000, True, None, "qwen3",
                                   ",".join(THOUGHT_TOKENS), "1e-4", "on", "a: b", "${x}"])
def test_yaml_scalars_read_back_the_same_in_pyyaml_and_omegaconf(value):
    from omegaconf import OmegaConf

    text = f"k: {yaml_scalar(value)}\n"
    assert yaml.safe_load(text)["k"] == value
    assert OmegaConf.to_container(OmegaConf.create(text))["k"] == value
