"""PEFT's LoRA linears as autograd functions that keep no dropped-out input copies and run no full-width scale and add.

PEFT computes an adapted layer as ``base(x) + lora_B(lora_A(dropout(x))) * scaling``. With ``lora_dropout`` > 0
(r1sft's default, 0.05) autograd keeps, for each of the 7 adapted linears of a decoder layer, the dropped-out copy
of its input (2 bytes per element) and the dropout mask (1 byte): ~118 KB per token and layer for Qwen2.5-7B, half
of all that a layer keeps. The scale and the add run as two more passes over every layer's full-width output, in
the forward, in checkpointing's recomputation and in the backward.

``LoRALinearFunction`` computes the same thing in one autograd node:

- forward: ``out = x W^T (+ b)``; ``a = dropout(x) A^T``; ``out += scaling * a B^T`` as one GEMM epilogue (addmm);
- it keeps only ``x`` (the same tensor for q/k/v and for gate/up, so stored once), the rank-r ``a`` and the RNG
  state the dropout drew from. The backward draws the same mask again from that state, in the same kernel on the
  same tensor (``torch.native_dropout``, which is what ``nn.Dropout`` runs on CUDA), so the gradients are those of
  PEFT's layer with that mask; ``scaling`` is applied on the rank-r side (r/out of the elements).

``SwiGLUDownFunction`` does the same for the gated MLP's end, ``down(silu(gate) * up)``: it keeps gate and up (as
liger's SwiGLU does) and computes their product again in the backward instead of keeping it (37 KB per token and
layer for Qwen2.5-7B); ``install()`` puts it into liger's and transformers' Qwen2/Qwen3/Llama MLPs.

Together they keep 121 KB per token and layer instead of 228 for Qwen2.5-7B with liger, which
r1sft.patches.partial_checkpointing turns into more layers without recomputation (26 of 28 instead of 12 at 16k tokens on an
80 GB GPU; +25% tokens/s packed, docs/bench/h100-fused-lora/7b-headline.md). Anything
``install()`` does not recognise goes to PEFT's own forward, per call: DoRA and other variants, several active
adapters, merged or disabled adapters, ``adapter_names``, a base layer other than ``nn.Linear`` (QLoRA's bnb
layers are other classes anyway), DeepSpeed ZeRO-3's partitioned weights, modules with forward hooks, trainable
base weights, and dtypes that disagree outside autocast.

``r1sft train`` turns it on for LoRA recipes without ZeRO-3 (``R1SFT_FUSED_LORA=on``, read by
``r1sft/patches/site/sitecustomize.py``); ``R1SFT_FUSED_LORA=off`` keeps PEFT's layer.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from r1sft.patches import gated_mlps
from r1sft.patches.lora_input_cast import has_variant

if TYPE_CHECKING:
    from r1sft.patches.registry import LaunchPlan

ENV_VAR = "R1SFT_FUSED_LORA"
ANNOUNCEMENT = "LoRA linears run as one autograd function"
FALLBACK = "PEFT's LoRA layer keeps dropped-out inputs"

log = logging.getLogger("r1sft.patches.fused_lora")
_state: dict[str, Any] = {"original": None, "fused": 0, "peft": 0, "why": {}, "mlps": []}


def enabled_by_env(environ: Mapping[str, str] | None = None) -> bool:
    return (os.environ if environ is None else environ).get(ENV_VAR, "").strip().lower() in ("on", "1", "true")


def applies_to(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> bool:
    """Whether a run of the LLaMA-Factory training ``config`` gets the fused layer (the launcher's switch, and what
    the memory model assumes): plain LoRA, not QLoRA/DoRA, not ZeRO-3, and not switched off in ``environ``."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_VAR, "on").strip().lower() in ("off", "0", "false", "no"):
        return False
    deepspeed = str(config.get("deepspeed") or "")
    return (config.get("finetuning_type", "lora") == "lora" and not config.get("use_dora")
            and not config.get("quantization_bit") and "z3" not in os.path.basename(deepspeed))


def _generator(device):
    import torch

    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    if device.type == "cpu":
        return torch.default_generator
    return None


def _lora_forward(x2, weight, bias, lora_a, lora_b, scaling, dropout_p, generator):
    """``x2 W^T + b + scaling * dropout(x2) A^T B^T`` for 2-D ``x2``: (output, rank-r ``a``, the dropout's RNG state)."""
    import torch

    out = torch.nn.functional.linear(x2, weight, bias)
    rng_state = None
    dropped = x2
    if dropout_p > 0:
        rng_state = generator.get_state()
        dropped, _ = torch.native_dropout(x2, dropout_p, True)
    a = torch.mm(dropped, lora_a.t())
    out.addmm_(a, lora_b.t(), alpha=scaling)  # the scale and the add in the GEMM's epilogue
    return out, a, rng_state


def _lora_backward(ctx, g, x2, weight, lora_a, lora_b, a, x_needed: bool):
    """Gradients of ``_lora_forward`` for 2-D ``g``: (input, lora_A, lora_B); the dropout mask drawn again."""
    import torch

    generator, rng_state, dropout_p, scaling = ctx.lora
    grad_a = grad_b = grad_x = None
    if ctx.needs_input_grad[ctx.lora_b_index]:
        grad_b = torch.mm(g.t(), a).mul_(scaling)
    ga = torch.mm(g, lora_b).mul_(scaling)  # gradient of a: (tokens, rank)
    dropped, mask = x2, None
    if rng_state is not None:  # the forward's mask again: same state, same kernel, same tensor
        now = generator.get_state()
        generator.set_state(rng_state)
        dropped, mask = torch.native_dropout(x2, dropout_p, True)
        generator.set_state(now)
    if ctx.needs_input_grad[ctx.lora_b_index - 1]:
        grad_a = torch.mm(ga.t(), dropped)
    if x_needed:
        grad_x = torch.mm(ga, lora_a)
        if mask is not None:
            grad_x = torch.ops.aten.native_dropout_backward(grad_x, mask, 1.0 / (1.0 - dropout_p))
        grad_x.addmm_(g, weight)  # in place: out-of-place addmm would first copy its C operand
    return grad_x, grad_a, grad_b


def _swiglu(gate, up):
    """``silu(gate) * up`` as liger's kernel computes it (silu in fp32, rounded, times up)."""
    import torch

    if gate.is_cuda:
        try:
            from liger_kernel.ops.swiglu import swiglu_forward

            return swiglu_forward(gate, up)[2]
        except ImportError:
            pass
    return torch.nn.functional.silu(gate) * up


def _swiglu_backward(gate, up, grad):
    """Gradients of ``_swiglu`` (liger's kernel writes them over ``gate`` and ``up``, which are not needed after)."""
    import torch

    if gate.is_cuda:
        try:
            from liger_kernel.ops.swiglu import swiglu_backward

            return swiglu_backward(gate, up, grad)
        except ImportError:
            pass
    gate32 = gate.to(torch.promote_types(gate.dtype, torch.float32))
    sigmoid = torch.sigmoid(gate32)
    silu = gate32 * sigmoid
    grad_up = (grad * silu).to(up.dtype)
    grad_gate = (grad * (silu * (1 - sigmoid) + sigmoid) * up).to(gate.dtype)
    return grad_gate, grad_up


def _functions():
    import torch

    class LoRALinearFunction(torch.autograd.Function):
        """``x W^T + b + scaling * dropout(x) A^T B^T``; all tensors in one dtype; W and b frozen. Keeps x, not
        the dropped-out copy nor the mask."""

        @staticmethod
        def forward(ctx, x, weight, bias, lora_a, lora_b, scaling, dropout_p, generator):
            x2 = x.reshape(-1, x.shape[-1])
            out, a, rng_state = _lora_forward(x2, weight, bias, lora_a, lora_b, scaling, dropout_p, generator)
            ctx.save_for_backward(x2, weight, lora_a, lora_b, a)
            ctx.lora, ctx.lora_b_index, ctx.x_shape = (generator, rng_state, dropout_p, scaling), 4, x.shape
            return out.view(*x.shape[:-1], out.shape[-1])

        @staticmethod
        def backward(ctx, grad_out):
            x2, weight, lora_a, lora_b, a = ctx.saved_tensors
            with torch.autocast(x2.device.type, enabled=False):
                g = grad_out.reshape(-1, grad_out.shape[-1])
                grad_x, grad_a, grad_b = _lora_backward(ctx, g, x2, weight, lora_a, lora_b, a,
                                                        ctx.needs_input_grad[0])
            return (None if grad_x is None else grad_x.view(ctx.x_shape)), None, None, grad_a, grad_b, None, None, None

    class SwiGLUDownFunction(torch.autograd.Function):
        """The MLP's end, ``down(silu(gate) * up)`` with ``down`` a LoRA linear as above. Keeps gate and up (as
        liger's SwiGLU does) and computes their product again in the backward instead of keeping it."""

        @staticmethod
        def forward(ctx, gate, up, weight, bias, lora_a, lora_b, scaling, dropout_p, generator):
            x2 = _swiglu(gate, up).reshape(-1, gate.shape[-1])
            out, a, rng_state = _lora_forward(x2, weight, bias, lora_a, lora_b, scaling, dropout_p, generator)
            ctx.save_for_backward(gate, up, weight, lora_a, lora_b, a)
            ctx.lora, ctx.lora_b_index = (generator, rng_state, dropout_p, scaling), 5
            return out.view(*gate.shape[:-1], out.shape[-1])

        @staticmethod
        def backward(ctx, grad_out):
            gate, up, weight, lora_a, lora_b, a = ctx.saved_tensors
            with torch.autocast(gate.device.type, enabled=False):
                x2 = _swiglu(gate, up).reshape(-1, gate.shape[-1])
                g = grad_out.reshape(-1, grad_out.shape[-1])
                x_needed = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
                grad_x, grad_a, grad_b = _lora_backward(ctx, g, x2, weight, lora_a, lora_b, a, x_needed)
                del x2
                grad_gate = grad_up = None
                if x_needed:
                    grad_gate, grad_up = _swiglu_backward(gate, up, grad_x.view(gate.shape))
            return grad_gate, grad_up, None, None, grad_a, grad_b, None, None, None

    return LoRALinearFunction, SwiGLUDownFunction


def _plain_linear(module) -> bool:
    import torch

    return (type(module) is torch.nn.Linear and not module._forward_hooks and not module._forward_pre_hooks
            and "forward" not in vars(module))  # accelerate's hooks replace the instance's forward


def _no(reason: str) -> None:
    _state["why"][reason] = _state["why"].get(reason, 0) + 1
    return None


def adapter_inputs(layer, x) -> tuple | None:
    """``(dtype, weight, bias, lora_A, lora_B, scaling, dropout_p, generator)`` for running PEFT's ``lora.Linear``
    ``layer`` fused on an input on ``x``'s device (and in its dtype outside autocast), or None where PEFT's own
    forward must run; the reason is counted in ``stats()``."""
    import torch
    from torch.nn.modules import module as nn_module

    if layer.disable_adapters or layer.merged:
        return _no("adapters merged or disabled")
    active = [name for name in layer.active_adapters if name in layer.lora_A]
    if len(active) != 1:
        return _no("not exactly one active adapter")
    name = active[0]
    if has_variant(layer) or getattr(layer, "fan_in_fan_out", False):
        return _no("DoRA or another LoRA variant")
    base, lora_a, lora_b, dropout = layer.base_layer, layer.lora_A[name], layer.lora_B[name], layer.lora_dropout[name]
    if not (_plain_linear(base) and _plain_linear(lora_a) and _plain_linear(lora_b)) or lora_a.bias is not None \
            or lora_b.bias is not None or nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
        return _no("not plain nn.Linear layers without hooks")
    if type(dropout) not in (torch.nn.Dropout, torch.nn.Identity):
        return _no("another dropout module")
    weight, bias = base.weight, base.bias
    if weight.requires_grad or (bias is not None and bias.requires_grad) or hasattr(weight, "ds_id"):
        return _no("trainable or ZeRO-3-partitioned base weights")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.device != weight.device:
        return _no("input type or device")
    generator = _generator(x.device)
    if generator is None:
        return _no("device without a known random generator")
    if torch.is_autocast_enabled(x.device.type):
        dtype = torch.get_autocast_dtype(x.device.type)
    else:
        dtype = x.dtype
        if not weight.dtype == lora_a.weight.dtype == lora_b.weight.dtype == dtype:
            return _no("dtypes differ outside autocast")
    p = float(dropout.p) if isinstance(dropout, torch.nn.Dropout) and dropout.training else 0.0

    def cast(tensor):
        return None if tensor is None else tensor.to(dtype)

    return (dtype, cast(weight), cast(bias), cast(lora_a.weight), cast(lora_b.weight), float(layer.scaling[name]), p,
            generator)


def fused_inputs(layer, x, args: tuple, kwargs: dict) -> tuple | None:
    """The arguments of ``LoRALinearFunction`` for this call of PEFT's ``lora.Linear`` (``layer``), or None."""
    if args or kwargs:
        return _no("extra forward arguments")
    if getattr(x, "ndim", 0) < 1 or x.numel() == 0 or x.shape[-1] != layer.base_layer.weight.shape[-1]:
        return _no("input shape")
    inputs = adapter_inputs(layer, x)
    return None if inputs is None else (x.to(inputs[0]), *inputs[1:])


def _silu_mlp(mlp) -> bool:
    """A gated MLP ``down(silu(gate(x)) * up(x))`` whose down projection is a PEFT LoRA linear."""
    from peft.tuners.lora import layer as lora_layer

    act = getattr(getattr(mlp, "config", None), "hidden_act", None)
    return act in ("silu", "swish") and type(getattr(mlp, "down_proj", None)) is lora_layer.Linear


def wanted(config: Mapping[str, Any], environ: Mapping[str, str], plan: LaunchPlan) -> str | None:
    # one autograd node per LoRA linear: no dropped-out input copies and masks kept for backward (half of a LoRA
    # layer's activations at lora_dropout 0.05), no full-width scale and add.
    return "plain LoRA without ZeRO-3" if applies_to(config, environ) else None


def on_value(plan: LaunchPlan) -> str:
    return "on"


def install() -> bool:
    """Wrap ``peft.tuners.lora.layer.Linear.forward`` and the gated MLPs' forward (idempotent). False where PEFT is
    not installed."""
    try:
        import torch
        from peft.tuners.lora import layer as lora_layer
    except ImportError:
        return False
    if _state["original"] is None:
        original = lora_layer.Linear.forward
        linear_function, swiglu_down_function = _functions()

        @functools.wraps(original)
        def forward(self, x, *args, **kwargs):
            inputs = fused_inputs(self, x, args, kwargs)
            if inputs is None:
                _state["peft"] += 1
                return original(self, x, *args, **kwargs)
            _state["fused"] += 1
            with torch.autocast(x.device.type, enabled=False):
                return linear_function.apply(*inputs)

        def mlp_forward(mlp_original):
            @functools.wraps(mlp_original)
            def forward(self, x):
                if not _silu_mlp(self):
                    return mlp_original(self, x)
                inputs = adapter_inputs(self.down_proj, x)
                if inputs is None:
                    _state["peft"] += 1
                    return mlp_original(self, x)
                gate, up = self.gate_proj(x).contiguous(), self.up_proj(x).contiguous()  # liger's kernels want rows
                _state["fused"] += 1
                with torch.autocast(x.device.type, enabled=False):
                    return swiglu_down_function.apply(gate.to(inputs[0]), up.to(inputs[0]), *inputs[1:])

            return forward

        _state["original"] = original
        lora_layer.Linear.forward = forward
        _state["mlps"] = gated_mlps.wrap_forwards(mlp_forward)
        log.info("r1sft: LoRA linears run as one autograd function (%s=on)", ENV_VAR)
    return True


def stats() -> dict[str, Any]:
    """Calls that ran fused, calls left to PEFT, and why."""
    return {"fused": _state["fused"], "peft": _state["peft"], "why": dict(_state["why"])}


def report() -> None:
    """One line on stderr at exit (only where an adapter ran)."""
    if _state["fused"] or _state["peft"]:
        why = "; ".join(f"{reason}: {count}" for reason, count in sorted(_state["why"].items()))
        print(f"r1sft: LoRA linears: {_state['fused']} calls fused, {_state['peft']} left to PEFT"
              + (f" ({why})" if why else ""), file=sys.stderr)


def uninstall() -> None:
    """Give PEFT its forward back (for tests)."""
    if _state["original"] is not None:
        from peft.tuners.lora import layer as lora_layer

        lora_layer.Linear.forward = _state["original"]
        gated_mlps.restore_forwards(_state["mlps"])
    _state.update(original=None, fused=0, peft=0, why={}, mlps=[])
