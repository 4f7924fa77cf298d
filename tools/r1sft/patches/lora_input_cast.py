"""LoRA adapters under autocast without PEFT's fp32 copy of every adapted layer's input.

Without DeepSpeed (several GPUs under DDP, or ``deepspeed: none``) LLaMA-Factory keeps the trainable LoRA weights in
fp32 and trains under bf16 autocast. PEFT's ``lora.Linear.forward`` then casts each adapted layer's bf16 input to
the adapter's fp32 (``_cast_input_dtype``) before the dropout, and autocast casts the dropped-out copy back to bf16
for ``lora_A``'s matmul: an fp32 copy of the input, dropout over 4-byte elements and a cast back, in the forward,
in checkpointing's recomputation and (as their gradients) in the backward, for 7 adapted layers per block whose
inputs reach the MLP's width.

PEFT's own bitsandbytes LoRA layers (QLoRA) skip that cast whenever autocast is on (``requires_conversion = not
torch.is_autocast_enabled()`` in ``peft/tuners/lora/bnb.py``), and PEFT documents it as a per-layer switch
(``cast_input_dtype_enabled``, ``peft.helpers.disable_input_dtype_casting``). ``install()`` makes ``lora.Linear`` do
what its bnb siblings do, decided per call: while autocast runs in the input's own dtype, the input reaches the
dropout and ``lora_A`` as it is. Nothing learned changes: autocast runs ``lora_A`` in bf16 either way, and dropout
computes ``x * mask / (1 - p)`` in fp32 inside the kernel and rounds once, as the cast back did. DoRA and other
variants, calls outside autocast and inputs in another dtype keep PEFT's path.

``r1sft train`` turns it on for LoRA recipes trained under autocast on GPUs (``R1SFT_LORA_INPUT_CAST=autocast``, read
by ``r1sft/patches/site/sitecustomize.py`` in every process the launch starts); ``R1SFT_LORA_INPUT_CAST=off`` keeps PEFT's
cast. Under DeepSpeed's bf16 mode the adapters are bf16 and PEFT casts nothing, so there it does nothing.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from r1sft.patches.registry import LaunchPlan

ENV_VAR = "R1SFT_LORA_INPUT_CAST"
ANNOUNCEMENT = "LoRA inputs stay bf16 under autocast"
FALLBACK = "PEFT copies LoRA inputs to fp32"

log = logging.getLogger("r1sft.patches.lora_input_cast")
_state: dict[str, Any] = {"original": None, "own": False, "skipped": 0, "kept": 0}


def enabled_by_env(environ: Mapping[str, str] | None = None) -> bool:
    return (os.environ if environ is None else environ).get(ENV_VAR, "").strip().lower() == "autocast"


def autocast_runs_in(x) -> bool:
    """Whether autocast is on for ``x``'s device and computes in ``x``'s dtype (so an upcast would be cast back)."""
    import torch

    device_type = x.device.type
    return torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == x.dtype


def has_variant(layer: Any) -> bool:
    # peft >= 0.15 keeps DoRA & co. in `lora_variant`; older releases flag DoRA in `use_dora`.
    return bool(getattr(layer, "lora_variant", None)) or any(getattr(layer, "use_dora", {}).values())


def wanted(config: Mapping[str, Any], environ: Mapping[str, str], plan: LaunchPlan) -> str | None:
    # fp32 adapters under autocast (no DeepSpeed: DDP on several GPUs, or deepspeed none), where PEFT copies every
    # adapted layer's input to fp32 and autocast casts it back; its QLoRA layers already skip that.
    mixed_precision = (config.get("bf16") or config.get("fp16")) and not config.get("pure_bf16")
    if (config.get("finetuning_type", "lora") == "lora" and mixed_precision and not config.get("deepspeed")
            and not config.get("use_cpu")):
        return "LoRA under autocast without DeepSpeed"
    return None


def on_value(plan: LaunchPlan) -> str:
    return "autocast"


def install() -> bool:
    """Wrap ``peft.tuners.lora.layer.Linear._cast_input_dtype`` (idempotent). False where PEFT is not installed."""
    try:
        import torch
        from peft.tuners.lora import layer as lora_layer
    except ImportError:
        return False
    if _state["original"] is None:
        original = lora_layer.Linear._cast_input_dtype

        @functools.wraps(original)
        def cast_input_dtype_unless_autocast(self, x, dtype):
            if (isinstance(x, torch.Tensor) and x.dtype != dtype and x.is_floating_point()
                    and autocast_runs_in(x) and not has_variant(self)):
                _state["skipped"] += 1
                return x
            if isinstance(x, torch.Tensor) and x.dtype != dtype:
                _state["kept"] += 1
            return original(self, x, dtype)

        _state.update(original=original, own="_cast_input_dtype" in vars(lora_layer.Linear))
        lora_layer.Linear._cast_input_dtype = cast_input_dtype_unless_autocast
        log.info("r1sft: LoRA inputs stay in autocast's dtype (%s=autocast)", ENV_VAR)
    return True


def stats() -> dict[str, int]:
    """Casts skipped under autocast, and casts left to PEFT (variants, no autocast)."""
    return {"skipped": _state["skipped"], "kept": _state["kept"]}


def report() -> None:
    """One line on stderr at exit (only where an adapter ran)."""
    if _state["skipped"] or _state["kept"]:
        print(f"r1sft: LoRA input casts: {_state['skipped']} skipped under autocast, {_state['kept']} left to PEFT",
              file=sys.stderr)


def uninstall() -> None:
    """Give PEFT its method back (for tests)."""
    if _state["original"] is not None:
        from peft.tuners.lora import layer as lora_layer

        if _state["own"]:
            lora_layer.Linear._cast_input_dtype = _state["original"]
        else:  # inherited from PEFT's BaseTunerLayer: uncover it again
            del lora_layer.Linear._cast_input_dtype
    _state.update(original=None, own=False, skipped=0, kept=0)
