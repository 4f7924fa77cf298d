"""Gradients of a tiny Qwen3's LoRA parameters after one forward and backward, the yardstick of the patches that
compute a forward again (offloaded checkpointing, the tiled MLP): a recomputation must give the gradients of the
network that ran, dropout masks included."""

from __future__ import annotations

import torch


def lora_gradients(model_dir, *, checkpointing: str, seed: int = 1, autocast: bool = False, dropout: float = 0.3):
    """Gradients of the LoRA parameters after one forward and backward of a tiny Qwen3 (LoRA dropout ``dropout``),
    with ``checkpointing`` "off", "torch" (LLaMA-Factory's default: reentrant torch.utils.checkpoint) or
    "offloaded"."""
    from llamafactory.model.model_utils.checkpointing import _gradient_checkpointing_enable
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear",
                                             init_lora_weights=False))
    model.train()
    if checkpointing != "off":
        _gradient_checkpointing_enable(model.base_model.model, {"use_reentrant": True},
                                       use_unsloth_gc=checkpointing == "offloaded")
    ids = torch.randint(3, 1000, (2, 24), generator=torch.Generator().manual_seed(2))
    torch.manual_seed(seed)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def assert_same(a, b, tol=1e-5):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=tol, rtol=tol), name
