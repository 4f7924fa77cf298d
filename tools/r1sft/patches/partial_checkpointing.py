"""Gradient checkpointing on all but the last N decoder layers, when memory holds those N layers' activations.

LLaMA-Factory checkpoints every decoder layer or none (``disable_gradient_checkpointing``). At R1 lengths a 7B
LoRA run needs checkpointing (16k tokens of Qwen2.5-7B activations are ~170 GiB), yet the checkpointed run uses a
third of an 80 GB GPU: the memory left could keep some layers' activations and spare their recomputation (about a
third of a layer's forward-and-backward time each).

``install()`` wraps transformers' ``PreTrainedModel._set_gradient_checkpointing`` (which LLaMA-Factory's
``_gradient_checkpointing_enable`` calls) so that, after it has turned checkpointing on, the last N layers that it
turned on run without it. Which layers does not change the peak (every layer's activations are alive when the
backward pass starts); only the recomputation is saved. Nothing learned changes: a layer computes the same thing
checkpointed or not.

``R1SFT_UNCHECKPOINTED_LAYERS=N`` turns it on (read by ``r1sft/patches/site/sitecustomize.py``); unset or 0: every layer
is checkpointed, as LLaMA-Factory does.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from r1sft.patches import packed_attention

if TYPE_CHECKING:
    from r1sft.patches.registry import LaunchPlan

ENV_VAR = "R1SFT_UNCHECKPOINTED_LAYERS"
ANNOUNCEMENT = "the last layers run without gradient checkpointing"
FALLBACK = "every layer is checkpointed"

log = logging.getLogger("r1sft.patches.partial_checkpointing")
_state: dict[str, Any] = {"original": None, "kept": None}


def layers_from_env(environ: Mapping[str, str] | None = None) -> int:
    value = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
    try:
        return max(int(value), 0)
    except ValueError:
        return 0


def enabled_by_env(environ: Mapping[str, str] | None = None) -> bool:
    return layers_from_env(environ) > 0


def wanted(config: Mapping[str, Any], environ: Mapping[str, str], plan: LaunchPlan) -> str | None:
    # The memory checkpointing leaves keeps the last layers whole: no recomputation for them (+14.5% for Qwen2.5-7B
    # LoRA packed, docs/bench/h100-partial-checkpointing/).
    if plan.uncheckpointed_layers <= 0 or config.get("disable_gradient_checkpointing") or config.get("use_cpu"):
        return None
    if environ.get(packed_attention.ENV_VAR, "varlen") != "varlen":
        return None  # the dense 4D mask path keeps a copy of the mask per layer, which the count leaves out
    return f"memory for {plan.uncheckpointed_layers} layers' activations"


def on_value(plan: LaunchPlan) -> str:
    return str(plan.uncheckpointed_layers)


def uncheckpoint_last(model, count: int) -> tuple[int, int]:
    """Turn checkpointing off on the last ``count`` checkpointed layers of ``model``: (layers left, layers kept)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]
    kept = layers[len(layers) - min(count, len(layers)):] if count > 0 else []
    for layer in kept:
        layer.gradient_checkpointing = False
    return len(layers) - len(kept), len(kept)


def install(count: int | None = None) -> bool:
    """Wrap ``_set_gradient_checkpointing`` (idempotent); ``count`` defaults to the environment's."""
    from transformers.modeling_utils import PreTrainedModel

    count = layers_from_env() if count is None else count
    if _state["original"] is None:
        original = PreTrainedModel._set_gradient_checkpointing

        @functools.wraps(original)
        def set_gradient_checkpointing_but_the_last(self, *args, **kwargs):
            original(self, *args, **kwargs)
            enable = kwargs.get("enable", args[0] if args else True)
            if enable:
                _state["kept"] = uncheckpoint_last(self, _state["count"])

        _state["original"] = original
        PreTrainedModel._set_gradient_checkpointing = set_gradient_checkpointing_but_the_last
    _state["count"] = count
    log.info("r1sft: the last %d layers run without gradient checkpointing (%s)", count, ENV_VAR)
    return True


def report() -> None:
    if _state["kept"] is not None:
        checkpointed, kept = _state["kept"]
        print(f"r1sft: gradient checkpointing on {checkpointed} layers; the last {kept} keep their activations",
              file=sys.stderr)


def uninstall() -> None:
    """Give transformers its method back (for tests)."""
    if _state["original"] is not None:
        from transformers.modeling_utils import PreTrainedModel

        PreTrainedModel._set_gradient_checkpointing = _state["original"]
    _state.update(original=None, kept=None)
