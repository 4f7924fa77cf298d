"""r1sft.patches.lora_input_cast and r1sft.patches.partial_checkpointing: same numbers as without them, switched on by the
launcher for the recipes that need them, and planned within the memory budget.

The GPU side (tokens/s, peak memory, losses side by side) is `bench/bench_train.py --case qwen2.5-7b-lora`; here
CPU bf16 autocast and tiny real models check that nothing trained changes.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from r1sft.patches import lora_input_cast as lic
from r1sft.patches import partial_checkpointing as pc
from r1sft.patches import registry
from r1sft.paths import REPO_ROOT
from r1sft.presets import get_preset
from r1sft.recipe import RecipeRequest, plan_recipe
from r1sft.recipe.fit import HEADROOM, uncheckpointed_layers
from r1sft.recipe.memory import GIB, activation_bytes_per_token_layer
from r1sft.train import launch
from r1sft.train.switches import patch_switches, planned_uncheckpointed_layers


class TwoLinears(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(16, 32), nn.Linear(32, 8)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def _lora_model(dropout: float, dora: bool = False):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(TwoLinears().to(torch.bfloat16), LoraConfig(
        r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["a", "b"], init_lora_weights=False, use_dora=dora))
    for param in model.parameters():  # LLaMA-Factory's fp32 adapters on bf16 frozen weights
        if param.requires_grad:
            param.data = param.data.float()
    return model


def _step(model, autocast: bool = True):
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = model(x)
    y.float().sum().backward()
    return y.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.fixture
def cast_hook():
    assert lic.install()
    yield lic
    lic.uninstall()


def test_lora_inputs_stay_bf16_under_autocast_with_the_same_outputs_and_gradients(cast_hook):
    cast_hook.uninstall()
    before, grads_before = _step(_lora_model(0.0))
    assert cast_hook.install()
    after, grads_after = _step(_lora_model(0.0))
    assert cast_hook.stats()["skipped"] == 2  # both adapted layers, no fp32 copy
    assert torch.equal(before, after)
    assert all(torch.equal(grads_before[k], grads_after[k]) for k in grads_before)


def test_dropout_runs_in_bf16_and_still_drops(cast_hook):
    model = _lora_model(0.5)
    _, grads = _step(model)
    assert cast_hook.stats()["skipped"] == 2
    assert all(g.abs().sum() > 0 for g in grads.values())


def test_peft_path_is_kept_for_dora_and_outside_autocast(cast_hook):
    _step(_lora_model(0.0, dora=True))
    assert cast_hook.stats() == {"skipped": 0, "kept": 2}
    cast_hook.uninstall()
    assert cast_hook.install()
    _step(_lora_model(0.0), autocast=False)  # bf16 input, fp32 adapter, no autocast: PEFT's cast is needed
    assert cast_hook.stats() == {"skipped": 0, "kept": 2}


def test_uninstall_restores_peft_inherited_method(cast_hook):
    from peft.tuners.lora import layer

    assert "_cast_input_dtype" in vars(layer.Linear)
    cast_hook.uninstall()
    assert "_cast_input_dtype" not in vars(layer.Linear)


def _tiny_qwen2():
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2)
    return AutoModelForCausalLM.from_config(config)


def _checkpointed_grads(layers_kept: int | None):
    model = _tiny_qwen2().train()
    if layers_kept is not None:
        pc.install(layers_kept)
    try:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
        flags = [layer.gradient_checkpointing for layer in model.model.layers]
        ids = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(2))
        model(input_ids=ids, labels=ids).loss.backward()
    finally:
        pc.uninstall()
    return flags, {n: p.grad for n, p in model.named_parameters()}


def test_the_last_layers_skip_checkpointing_with_identical_gradients(capsys):
    flags_all, grads_all = _checkpointed_grads(None)
    flags_some, grads_some = _checkpointed_grads(3)
    assert flags_all == [True] * 4 and flags_some == [True, False, False, False]
    assert all(torch.equal(grads_all[k], grads_some[k]) for k in grads_all)


def test_lora_activation_count_is_the_frozen_base_count():
    shape = get_preset("qwen2.5-7b").shape
    h, q, kv, i = shape.hidden, shape.q_dim, shape.kv_dim, shape.intermediate
    fan_in = sum(f for _, f, _ in shape.linears())
    # liger norm inputs, attention's q/k/v/out, SwiGLU's gate and up, dropout output + mask: nothing for the
    # frozen linears' inputs (H100: 3.4 GiB per uncheckpointed layer at 16k tokens = 228 KB per token)
    expected = 2 * 2 * h + 2 * (2 * q + 2 * kv) + 2 * 2 * i + 3 * fan_in
    assert activation_bytes_per_token_layer(shape, method="lora", liger=True) == expected
    assert 220e3 < expected < 235e3


def _plan(method: str, gpus: int = 1, **kw):
    return plan_recipe(RecipeRequest(model="qwen2.5-7b", method=method, gpus=gpus, cutoff=16384, global_batch=8,
                                     **kw), build_tiny=False)


def test_planner_keeps_layers_within_the_budget_for_lora_and_full_sft_without_deepspeed():
    plan = _plan("lora", packing=True)
    layers = plan.preset.shape.layers
    assert 0 < plan.uncheckpointed_layers < layers
    assert plan.memory.peak <= 80 * GIB * HEADROOM
    assert f"last {plan.uncheckpointed_layers} of {layers} layers" in plan.why["disable_gradient_checkpointing"]
    assert _plan("full", gpus=8).uncheckpointed_layers == 0  # ZeRO: its counts carry more margin
    assert _plan("qlora").uncheckpointed_layers == 0
    full = plan_recipe(RecipeRequest(model="qwen2.5-1.5b", method="full", gpus=1, gpu_mem=80, cutoff=32768,
                                     global_batch=2), build_tiny=False)
    assert not full.train.get("disable_gradient_checkpointing") and not full.train.get("deepspeed")
    assert 0 < full.uncheckpointed_layers < full.preset.shape.layers  # 14 measured on an 80 GB cap: +12.5%
    assert full.memory.peak <= 80 * GIB * HEADROOM
    assert f"last {full.uncheckpointed_layers} of 28 layers" in full.why["disable_gradient_checkpointing"]


def test_launcher_recomputes_for_the_config_it_launches():
    plan = _plan("lora", packing=True)
    header = {"preset": "qwen2.5-7b", "gpu_mem": "80"}
    config = dict(plan.train)
    assert planned_uncheckpointed_layers(config, header, 1) == plan.uncheckpointed_layers
    longer = {**config, "cutoff_len": 32768}  # an edit or override: fewer layers fit, never an OOM plan
    assert planned_uncheckpointed_layers(longer, header, 1) < plan.uncheckpointed_layers
    assert planned_uncheckpointed_layers(config, {}, 1) == 0  # not planned by r1sft: LLaMA-Factory's behaviour
    assert uncheckpointed_layers({**config, "disable_gradient_checkpointing": True}, plan.preset, 80, 1) == 0
    switches = patch_switches(config, {}, plan.uncheckpointed_layers)
    assert switches[pc.ENV_VAR] == str(plan.uncheckpointed_layers)
    assert patch_switches(config, {pc.ENV_VAR: "0"}, 5)[pc.ENV_VAR] == "0"  # the user's choice wins


def test_launcher_turns_the_cast_hook_on_for_autocast_lora_only():
    ddp_lora = {"finetuning_type": "lora", "bf16": True, "lora_rank": 64}
    assert patch_switches(ddp_lora, {})[lic.ENV_VAR] == "autocast"
    assert lic.ENV_VAR not in patch_switches({**ddp_lora, "deepspeed": "ds_configs/z2.json"}, {})
    assert lic.ENV_VAR not in patch_switches({**ddp_lora, "use_cpu": True, "bf16": False}, {})
    assert lic.ENV_VAR not in patch_switches({"finetuning_type": "full", "bf16": True}, {})
    assert patch_switches(ddp_lora, {lic.ENV_VAR: "off"})[lic.ENV_VAR] == "off"


def test_startup_hook_installs_both_in_a_fresh_interpreter():
    code = ("from peft.tuners.lora import layer; from transformers.modeling_utils import PreTrainedModel as P; "
            "print(hasattr(layer.Linear._cast_input_dtype, '__wrapped__'), "
            "hasattr(P._set_gradient_checkpointing, '__wrapped__'))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(registry.SITE_DIR), str(REPO_ROOT / "tools")]),
           lic.ENV_VAR: "autocast", pc.ENV_VAR: "3"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]  # both wrapped (functools.wraps keeps the names)
    assert "LoRA inputs stay bf16 under autocast" in done.stderr
    off = subprocess.run([sys.executable, "-c", code], env={**env, lic.ENV_VAR: "off", pc.ENV_VAR: "0"},
                         capture_output=True, text=True, timeout=120)
    assert off.stdout.split() == ["False", "False"]


def test_launch_recounts_for_new_tokens_and_other_models():
    plan = _plan("lora", packing=True)
    config, header = dict(plan.train), {"preset": "qwen2.5-7b", "gpu_mem": "80"}
    planned = planned_uncheckpointed_layers(config, header, 1)
    for key, value in (("add_tokens", "<x>"), ("resize_vocab", True), ("additional_target", "embed_tokens")):
        assert planned_uncheckpointed_layers({**config, key: value}, header, 1) < planned  # trainable embeddings
    other = {**config, "model_name_or_path": "Qwen/Qwen2.5-14B-Instruct"}
    assert planned_uncheckpointed_layers(other, header, 1) == 0  # its shape is not the one planned for


def test_tokenized_path_follows_the_settings_it_depends_on(capsys):
    from r1sft.recipe.values import tokenized_path

    plan = _plan("lora", packing=True)
    config, header = dict(plan.train), {"preset": "qwen2.5-7b"}
    base = tokenized_path(config, "qwen2.5-7b", ["r1sft_sample"])
    assert base == config["tokenized_path"]
    for key, value in (("val_size", 0.1), ("seed", 7), ("preserve_thinking", True), ("cutoff_len", 4096)):
        assert tokenized_path({**config, key: value}, "qwen2.5-7b", ["r1sft_sample"]) != base
    edited = {**config, "cutoff_len": 4096}
    launch._follow_tokenization(edited, header)
    assert edited["tokenized_path"] != base and "-4096-packed-" in edited["tokenized_path"]
    assert "tokenization settings differ" in capsys.readouterr().out
    own = {**config, "tokenized_path": "/data/my_cache", "cutoff_len": 4096}
    launch._follow_tokenization(own, header)
    assert own["tokenized_path"] == "/data/my_cache"  # a user's own folder is theirs


def test_launch_words_read_as_booleans():
    from r1sft.recipe import lf

    assert lf.coerce_booleans({"include_num_input_tokens_seen": "off"}, lf.TRAIN) == {
        "include_num_input_tokens_seen": False}
    assert launch.parse_overrides(["save_strategy=no", "plot_loss=off"]) == {"save_strategy": "no",
                                                                            "plot_loss": False}


def test_no_partial_checkpointing_on_the_dense_packed_path():
    packed = {"neat_packing": True, "finetuning_type": "lora", "bf16": True}
    assert pc.ENV_VAR in patch_switches(packed, {}, 12)
    assert pc.ENV_VAR not in patch_switches(packed, {"R1SFT_PACKED_ATTENTION": "off"}, 12)
