"""r1sft.patches.fused_lora: PEFT's LoRA linears and the gated MLP's end as autograd functions that keep less for backward.

Same losses and gradients as PEFT's layers (to fp64 rounding) on tiny real models of each family, with and without
dropout (the mask is drawn again from the saved RNG state), under both kinds of gradient checkpointing and under
CPU bf16 autocast; PEFT's own forward for everything it does not recognise; switched on by the launcher for plain
LoRA without ZeRO-3 and counted by the memory model and the planner. The GPU side (same masks as PEFT's kernel,
time and memory per layer, tokens/s) is ``bench/fused_lora_check.py`` and ``bench/bench_train.py``.
"""

from __future__ import annotations

import pytest
import torch

from r1sft.patches import fused_lora
from r1sft.presets import get_preset
from r1sft.recipe import RecipeRequest, plan_recipe
from r1sft.recipe.memory import activation_bytes_per_token_layer
from r1sft.train.switches import patch_switches, planned_uncheckpointed_layers


@pytest.fixture
def fused():
    assert fused_lora.install()
    yield fused_lora
    fused_lora.uninstall()


def _native_dropout(self, x):  # what nn.Dropout runs on CUDA, so that PEFT's masks are the fused layer's on CPU too
    return torch.native_dropout(x, self.p, True)[0] if self.training else x


def _peft_model(family: str, dropout: float, dtype=torch.float64, **lora):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from r1sft.tiny import ensure_tiny_model

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(ensure_tiny_model(f"tiny-{family}"), dtype=dtype)
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules="all-linear",
                        init_lora_weights=False, **lora)
    return get_peft_model(model, config).train()


def _step(model, checkpointing: str | None = None, autocast: bool = False):
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": checkpointing == "reentrant"})
        model.enable_input_require_grads()
    ids = torch.randint(3, 200, (2, 24), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(5)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    after = torch.rand(4)  # the random stream after the step: the backward's redraw must leave it where it was
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads, after


def _assert_same(reference, got, rtol: float):
    loss, grads, after = reference
    assert torch.allclose(loss, got[0], rtol=rtol, atol=0)
    assert grads.keys() == got[1].keys() and grads
    for name, grad in grads.items():
        scale = grad.abs().max().clamp_min(1e-30)
        assert ((grad - got[1][name]).abs().max() / scale).item() < rtol, name
    assert torch.equal(after, got[2])


@pytest.mark.parametrize("family", ["qwen2.5", "qwen3", "llama3.2"])
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_same_loss_and_gradients_as_peft(family, dropout, monkeypatch):
    monkeypatch.setattr(torch.nn.Dropout, "forward", _native_dropout)
    model = _peft_model(family, dropout)
    reference = _step(model)
    assert fused_lora.install()
    try:
        got = _step(model)
        stats = fused_lora.stats()
    finally:
        fused_lora.uninstall()
    _assert_same(reference, got, rtol=1e-12)
    layers = model.config.num_hidden_layers
    assert stats["fused"] == 7 * layers and stats["peft"] == 0  # 6 linears + 1 MLP end per layer


@pytest.mark.parametrize("checkpointing", ["reentrant", "non-reentrant"])
def test_dropout_mask_is_the_same_under_gradient_checkpointing(checkpointing, monkeypatch):
    monkeypatch.setattr(torch.nn.Dropout, "forward", _native_dropout)
    reference = _step(_peft_model("qwen2.5", 0.3))
    assert fused_lora.install()
    try:
        got = _step(_peft_model("qwen2.5", 0.3), checkpointing=checkpointing)
    finally:
        fused_lora.uninstall()
    _assert_same(reference, got, rtol=1e-12)


def test_dropout_still_drops(fused):
    model = _peft_model("qwen2.5", 0.5)
    dropped = _step(model)[0]
    ids = torch.randint(3, 200, (2, 24), generator=torch.Generator().manual_seed(0))  # _step's batch
    model.eval()
    with torch.no_grad():
        kept = model(input_ids=ids, labels=ids).loss
        assert torch.equal(kept, model(input_ids=ids, labels=ids).loss)  # no dropout in eval: deterministic
    assert abs(dropped.item() - kept.item()) > 1e-6


def test_bf16_autocast_with_fp32_adapters(fused, monkeypatch):
    monkeypatch.setattr(torch.nn.Dropout, "forward", _native_dropout)
    model = _peft_model("qwen2.5", 0.0, dtype=torch.bfloat16)
    for param in model.parameters():  # LLaMA-Factory's fp32 adapters on bf16 frozen weights
        if param.requires_grad:
            param.data = param.data.float()
    fused.uninstall()
    reference = _step(model, autocast=True)
    assert fused.install()
    got = _step(model, autocast=True)
    assert all(g.dtype == torch.float32 for g in got[1].values())  # the optimizer's fp32 adapters get fp32 grads
    _assert_same(reference, got, rtol=0.05)  # bf16: the scale and add round once in the fused GEMM, twice in PEFT


def test_peft_keeps_what_it_is_not_recognised(fused):
    _step(_peft_model("qwen2.5", 0.0, use_dora=True))
    stats = fused.stats()
    assert stats["fused"] == 0 and stats["peft"] > 0 and "DoRA or another LoRA variant" in stats["why"]

    model = _peft_model("qwen2.5", 0.0)
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    layer.base_layer.weight.ds_id = 7  # a ZeRO-3 partitioned parameter: its gather hooks must run
    x = torch.randn(3, layer.in_features, dtype=torch.float64)
    assert fused_lora.fused_inputs(layer, x, (), {}) is None
    del layer.base_layer.weight.ds_id
    assert fused_lora.fused_inputs(layer, x, (), {}) is not None
    assert fused_lora.fused_inputs(layer, x.float(), (), {}) is None  # dtypes differ outside autocast
    handle = layer.base_layer.register_forward_hook(lambda *args: None)
    assert fused_lora.fused_inputs(layer, x, (), {}) is None
    handle.remove()
    with model.disable_adapter():
        assert fused_lora.fused_inputs(layer, x, (), {}) is None
    assert "adapters merged or disabled" in fused.stats()["why"]


def test_uninstall_restores_peft_and_the_mlps(fused):
    from peft.tuners.lora import layer
    from transformers.models.qwen2 import modeling_qwen2

    assert hasattr(layer.Linear.forward, "__wrapped__") and hasattr(modeling_qwen2.Qwen2MLP.forward, "__wrapped__")
    fused.uninstall()
    assert not hasattr(layer.Linear.forward, "__wrapped__")
    assert not hasattr(modeling_qwen2.Qwen2MLP.forward, "__wrapped__")


def test_launcher_switches_it_on_for_plain_lora_without_zero3():
    lora = {"finetuning_type": "lora", "bf16": True}
    assert patch_switches(lora, {})[fused_lora.ENV_VAR] == "on"
    assert patch_switches({**lora, "deepspeed": "ds_configs/z2.json"}, {})[fused_lora.ENV_VAR] == "on"
    for other in ({"deepspeed": "ds_configs/z3.json"}, {"deepspeed": "ds_configs/z3_offload.json"},
                  {"use_dora": True}, {"quantization_bit": 4}, {"finetuning_type": "full"}):
        assert fused_lora.ENV_VAR not in patch_switches({**lora, **other}, {})
    assert fused_lora.ENV_VAR not in patch_switches(lora, {fused_lora.ENV_VAR: "off"})  # the user's choice


def test_memory_model_and_planner_count_it():
    shape = get_preset("qwen2.5-7b").shape
    peft = activation_bytes_per_token_layer(shape, method="lora", liger=True)
    fused = activation_bytes_per_token_layer(shape, method="lora", liger=True, fused_lora=True)
    # H100, 16k tokens, no liger: 147 KB per token and layer kept with the fused layers, 287 with PEFT's
    # (docs/bench/h100-fused-lora/fused-lora-check.md); liger's MLP keeps less, hence the lower count here
    assert fused < 0.6 * peft and 115e3 < fused < 130e3
    request = dict(model="qwen2.5-7b", method="lora", gpus=1, cutoff=16384, global_batch=8)
    plan = plan_recipe(RecipeRequest(**request), build_tiny=False)
    assert "deepspeed" not in plan.train  # fp32 adapters under autocast: faster than ZeRO-2 with the fused layer
    config, header = dict(plan.train), {"preset": "qwen2.5-7b", "gpu_mem": "80"}
    with_fused = planned_uncheckpointed_layers(config, header, 1)
    assert with_fused == plan.uncheckpointed_layers
    assert planned_uncheckpointed_layers(config, header, 1, {fused_lora.ENV_VAR: "off"}) < with_fused - 5
