"""Offloaded gradient checkpointing (LLaMA-Factory's ``use_unsloth_gc``) that recomputes what the forward computed.

Under checkpointing each decoder layer keeps only its input for the backward pass: at long traces these inputs are
what is left to cut (28 layers x 131,072 tokens x 3,584 x 2 bytes = 24.5 GiB for Qwen2.5-7B LoRA at 128k tokens).
LLaMA-Factory's ``use_unsloth_gc`` copies them to host RAM in the forward and back in the backward
(``get_unsloth_gradient_checkpointing_func`` in ``llamafactory/model/model_utils/checkpointing.py``), but its
recomputation runs without the forward's random state, so LoRA's dropout draws other masks than the forward used
and the gradients belong to a network that never ran; it copies through pageable memory, and back to ``"cuda"``
whatever device the layer was on (a CPU run fails in the first backward).

``install()`` gives LLaMA-Factory :class:`OffloadedCheckpoint` instead when its checkpointing module is imported:
the same offload, with the CPU and CUDA random states of the forward restored for the recomputation (as
``torch.utils.checkpoint`` does), the forward's autocast state, pinned host buffers (the copies overlap with
compute instead of stalling it) and the layer's own device. Nothing else changes: which layers are checkpointed
(``r1sft.patches.partial_checkpointing`` still keeps the last ones whole) and what each computes.

``r1sft train`` turns it on for recipes with ``use_unsloth_gc: true``, which the planner writes where only
offloading the checkpoints fits a trace on the GPU (``recipe.fit``); ``R1SFT_OFFLOADED_CHECKPOINTING=off`` keeps
LLaMA-Factory's function.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from r1sft.patches import on_import
from r1sft.patches.recompute import ForwardState

if TYPE_CHECKING:
    from r1sft.patches.registry import LaunchPlan

ENV_VAR = "R1SFT_OFFLOADED_CHECKPOINTING"
ANNOUNCEMENT = "offloaded checkpointing recomputes with the forward's random state, through pinned memory"
FALLBACK = "LLaMA-Factory's use_unsloth_gc (dropout masks differ in the recomputation)"
CHECKPOINTING_MODULE = "llamafactory.model.model_utils.checkpointing"

_state: dict[str, Any] = {"finder": None, "module": None, "original": None, "layers": 0, "bytes": 0}


def enabled_by_env(environ: Mapping[str, str] | None = None) -> bool:
    return (os.environ if environ is None else environ).get(ENV_VAR, "").strip().lower() == "on"


def wanted(config: Mapping[str, Any], environ: Mapping[str, str], plan: LaunchPlan) -> str | None:
    if config.get("use_unsloth_gc") and not config.get("disable_gradient_checkpointing"):
        return "use_unsloth_gc: LLaMA-Factory's offload recomputes without the forward's random state"
    return None


def on_value(plan: LaunchPlan) -> str:
    return "on"


def _autograd_function():
    import torch

    class OffloadedCheckpoint(torch.autograd.Function):
        """``layer(hidden_states, *args)`` keeping only ``hidden_states``, in host RAM, for the backward pass."""

        @staticmethod
        def forward(ctx, forward_function, hidden_states, *args):
            ctx.state = ForwardState.capture(hidden_states.device)
            ctx.forward_function, ctx.args = forward_function, args
            ctx.save_for_backward(to_host(hidden_states))
            with torch.no_grad():
                return forward_function(hidden_states, *args)

        @staticmethod
        def backward(ctx, grad_output, *_):
            (saved,) = ctx.saved_tensors
            hidden_states = saved.to(ctx.state.device, non_blocking=True).detach().requires_grad_(True)
            with ctx.state.replay():
                outputs = ctx.forward_function(hidden_states, *ctx.args)
            output = outputs[0] if isinstance(outputs, tuple) else outputs
            torch.autograd.backward(output, grad_output)
            return (None, hidden_states.grad) + (None,) * len(ctx.args)

    return OffloadedCheckpoint


def to_host(tensor):
    """A host copy of a GPU tensor in pinned memory (the copy runs in stream order, without stalling the host);
    a CPU tensor as it is."""
    import torch

    _state["layers"] += 1
    if tensor.device.type == "cpu":
        return tensor.detach()
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor.detach(), non_blocking=True)
    _state["bytes"] += tensor.numel() * tensor.element_size()
    return host


def offloaded_checkpointing_func():
    """What ``get_unsloth_gradient_checkpointing_func`` returns once installed."""
    if _state.get("function") is None:
        _state["function"] = _autograd_function().apply
    return _state["function"]


def replace(module: Any) -> None:
    """Make LLaMA-Factory's checkpointing ``module`` hand out :class:`OffloadedCheckpoint` (idempotent)."""
    if _state["original"] is None:
        _state.update(module=module, original=module.get_unsloth_gradient_checkpointing_func)
        module.get_unsloth_gradient_checkpointing_func = offloaded_checkpointing_func


def install() -> bool:
    if _state["original"] is None and _state["finder"] is None:
        _state["finder"] = on_import.when_imported(CHECKPOINTING_MODULE, replace)
    return True


def report() -> None:
    if _state["layers"]:
        print(f"r1sft: offloaded checkpointing: {_state['layers']} layer inputs kept in host memory "
              f"({_state['bytes'] / 1024**3:.1f} GiB copied from the GPU)", file=sys.stderr)


def uninstall() -> None:
    """Take the import hook out and give LLaMA-Factory its function back (for tests)."""
    on_import.remove(_state["finder"])
    if _state["original"] is not None:
        _state["module"].get_unsloth_gradient_checkpointing_func = _state["original"]
    _state.update(finder=None, module=None, original=None, layers=0, bytes=0, function=None)
