"""The gated MLP classes whose ``forward`` is ``down_proj(silu(gate_proj(x)) * up_proj(x))``, which the patches
that change how an MLP runs wrap (``fused_lora``, then ``tiled_mlp`` around it): liger's (LLaMA-Factory swaps it in
with ``enable_liger_kernel``) and transformers' for the presets' families."""

from __future__ import annotations

import importlib
from collections.abc import Callable

MLP_CLASSES = (
    ("liger_kernel.transformers.swiglu", "LigerSwiGLUMLP"),
    ("transformers.models.qwen2.modeling_qwen2", "Qwen2MLP"),
    ("transformers.models.qwen3.modeling_qwen3", "Qwen3MLP"),
    ("transformers.models.llama.modeling_llama", "LlamaMLP"),
)


def wrap_forwards(wrapper: Callable) -> list[tuple[type, Callable]]:
    """``cls.forward = wrapper(cls.forward)`` for every class of MLP_CLASSES that imports; the (class, forward)
    pairs to give back with ``restore_forwards``."""
    saved = []
    for module_name, class_name in MLP_CLASSES:
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue
        saved.append((cls, cls.forward))
        cls.forward = wrapper(cls.forward)
    return saved


def restore_forwards(saved: list[tuple[type, Callable]]) -> None:
    for cls, forward in reversed(saved):
        cls.forward = forward
