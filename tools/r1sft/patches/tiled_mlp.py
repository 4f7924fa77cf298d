"""The gated MLP run over the sequence in tiles, for traces too long for one GPU otherwise.

At 128k tokens the MLP is what a decoder layer's memory is made of: Qwen2.5-7B's gate, up and their product are
131,072 x 18,944 bf16 each (4.6 GiB apiece), alive while the layer is recomputed and again as gradients in its
backward, where the layer's input is 0.9 GiB. DeepSpeed's ALST (``TiledMLP`` in
``deepspeed/runtime/sequence_parallel/ulysses_sp.py``) computes the MLP tile by tile and keeps only its input,
computing each tile again in the backward; every token's MLP is independent of the others', so the result is the
same. Its recomputation runs without the forward's random state, so LoRA's dropout would draw other masks than the
forward used: :class:`TiledMLP` here restores it (``r1sft.patches.recompute``), and without gradients (the first,
checkpointed forward) the tiles are simply computed one after another.

``install()`` wraps the ``forward`` of the gated MLP classes (``r1sft.patches.gated_mlps``; after
``fused_lora``, so the fused LoRA MLP runs inside each tile). ``R1SFT_TILED_MLP=N`` turns it on with tiles of N tokens; the planner writes
it where only tiling fits a trace on one GPU (``tiled_mlp=N`` on the recipe header's last line, read by ``r1sft
train``); unset or 0: LLaMA-Factory's MLP. The cost: one more MLP forward per layer and step.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from r1sft.patches import gated_mlps
from r1sft.patches.recompute import ForwardState

if TYPE_CHECKING:
    from r1sft.patches.registry import LaunchPlan

ENV_VAR = "R1SFT_TILED_MLP"
ANNOUNCEMENT = "the MLP runs over the sequence in tiles"
FALLBACK = "the MLP over the whole sequence at once"

_state: dict[str, Any] = {"tokens": 0, "mlps": [], "tiled": 0}


def tile_tokens_from_env(environ: Mapping[str, str] | None = None) -> int:
    value = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
    return int(value) if value.isdigit() else 0


def enabled_by_env(environ: Mapping[str, str] | None = None) -> bool:
    return tile_tokens_from_env(environ) > 0


def wanted(config: Mapping[str, Any], environ: Mapping[str, str], plan: LaunchPlan) -> str | None:
    if plan.mlp_tile_tokens > 0:
        return f"the plan tiles the MLP in {plan.mlp_tile_tokens}-token tiles"
    return None


def on_value(plan: LaunchPlan) -> str:
    return str(plan.mlp_tile_tokens)


def tiles(rows: int, tile_tokens: int) -> int:
    """Tiles of at most ``tile_tokens`` rows for ``rows`` tokens (the memory model counts the same)."""
    return max(1, -(-rows // tile_tokens)) if tile_tokens > 0 else 1


def in_tiles(mlp_forward, mlp, x, count: int):
    """``mlp_forward(mlp, x)`` computed ``count`` tiles at a time along the sequence, each tile's output written into
    one tensor as it comes (no list of them beside a concatenated copy: 2 x T x h less at the peak)."""
    parts = x.chunk(count, dim=-2)
    first = mlp_forward(mlp, parts[0])
    out = first.new_empty((*x.shape[:-1], first.shape[-1]))
    start = 0
    for index, part in enumerate(parts):
        out.narrow(-2, start, part.shape[-2]).copy_(first if index == 0 else mlp_forward(mlp, part))
        start += part.shape[-2]
    return out


def _autograd_function():
    import torch

    class TiledMLP(torch.autograd.Function):
        """``mlp_forward(mlp, x)`` tile by tile over the rows of ``x``, keeping only ``x`` for the backward."""

        @staticmethod
        def forward(ctx, mlp_forward, mlp, x, count):
            ctx.mlp_forward, ctx.mlp, ctx.count = mlp_forward, mlp, count
            ctx.state = ForwardState.capture(x.device)
            ctx.save_for_backward(x)
            with torch.no_grad():
                return in_tiles(mlp_forward, mlp, x, count)

        @staticmethod
        def backward(ctx, grad_output):
            (x,) = ctx.saved_tensors
            grad_x = torch.empty_like(x)
            parts = zip(x.detach().chunk(ctx.count, dim=-2), grad_output.chunk(ctx.count, dim=-2),
                        grad_x.chunk(ctx.count, dim=-2), strict=True)
            with ctx.state.replay():  # the tiles in the forward's order: each draws the masks it drew then
                for part, grad_part, grad_x_part in parts:
                    part = part.detach().requires_grad_(True)
                    torch.autograd.backward(ctx.mlp_forward(ctx.mlp, part), grad_part)
                    grad_x_part.copy_(part.grad)
            return None, None, grad_x, None

    return TiledMLP


def tiled_forward(mlp_forward):
    """``mlp_forward`` (an MLP class's ``forward(self, x)``) computed in tiles of the installed size."""
    import torch

    @functools.wraps(mlp_forward)
    def forward(self, x):
        rows = x.shape[-2] if x.ndim >= 2 else 1
        count = tiles(rows, _state["tokens"])
        if count == 1:
            return mlp_forward(self, x)
        _state["tiled"] += 1
        if not torch.is_grad_enabled():
            return in_tiles(mlp_forward, self, x, count)
        return _state["function"].apply(mlp_forward, self, x, count)

    return forward


def install(tile_tokens: int | None = None) -> bool:
    """Wrap the gated MLPs' ``forward`` (idempotent); ``tile_tokens`` defaults to the environment's."""
    _state["tokens"] = tile_tokens_from_env() if tile_tokens is None else tile_tokens
    if not _state["mlps"]:
        _state["function"] = _autograd_function()
        _state["mlps"] = gated_mlps.wrap_forwards(tiled_forward)
    return True


def report() -> None:
    """One line at exit, where an MLP ran in tiles."""
    if not _state["tiled"]:
        return
    print(f"r1sft: tiled MLP: {_state['tiled']} MLP calls in tiles of {_state['tokens']} tokens", file=sys.stderr)


def uninstall() -> None:
    """Give the MLP classes their forward back (for tests)."""
    gated_mlps.restore_forwards(_state["mlps"])
    _state.update(tokens=0, mlps=[], tiled=0, function=None)
