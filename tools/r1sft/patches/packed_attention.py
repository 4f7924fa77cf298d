"""Varlen attention for packed and padded batches, without a dense O(L²) mask.

LLaMA-Factory 0.9.5 keeps packed documents from attending to each other (``neat_packing: true``) with a 4D
block-diagonal mask that SDPA applies densely (``flash_attn: sdpa``, the only choice where flash-attn cannot be
installed), so a 16k-token pack of four documents costs 16k² of attention instead of the sum of the four squares.
Unpacked batches carry a mask too: LLaMA-Factory pads every batch to a multiple of 8 tokens, so transformers hands
SDPA a 4D padding mask instead of ``is_causal``, and SDPA's memory-efficient kernel keeps its own bf16 copy of the
L x L mask in every layer for backward: 2 GiB per layer at 32k tokens, 56 GiB for a 28-layer model kept whole
(docs/bench/h200-long-traces/attention-memory-1.5b.md). PyTorch 2.10+ ships FlashAttention-2's varlen kernel itself
(``torch.nn.attention.varlen.varlen_attn``).

``install()`` registers, through transformers' public ``AttentionInterface``, an ``sdpa`` that recognises a
block-diagonal causal mask (LLaMA-Factory's packed mask, and a padded causal mask, which is one document per row
followed by padding), recovers the document boundaries from it (once per forward, checked against the whole mask),
and runs the varlen kernel over the documents. Every other call (no mask, a mask of another shape, dropout,
generation) goes to transformers' own ``sdpa`` unchanged, so what is trained is exactly what LLaMA-Factory trains
without it: the same documents, the same mask, only a kernel that skips the masked blocks. (Padding tokens attend
to their own padding run instead of to the real tokens before them: their outputs reach no real token and no loss.)

Packs never become a dense mask under it: LLaMA-Factory's collator would build the block-diagonal mask on the host
in every dataloader worker (a 65,536-token pack: an 8 GiB bf16 mask, a few times that in temporaries, then copied
to the GPU; 32 GiB at 128k). ``install()`` also hands packs of one row to the model as LLaMA-Factory does for
FlashAttention-2 (no mask, positions that restart with every document; padding cut to a multiple of 64 tokens
and made a run of its own), keeps transformers from expanding those positions into a dense mask of its own (its
packed-sequence detection, for sdpa), and attends per document from the positions (what its FlashAttention-2
path does). Unpacked rows past 32k tokens leave the collator without a mask too (the collator's docstring says
why only those).

``r1sft train`` turns it on for every GPU recipe (``R1SFT_PACKED_ATTENTION=varlen``, read by
``r1sft/patches/site/sitecustomize.py`` in every process the launch starts); ``R1SFT_PACKED_ATTENTION=off`` keeps
LLaMA-Factory's dense path.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from r1sft.patches import on_import

if TYPE_CHECKING:
    from r1sft.patches.registry import LaunchPlan

ENV_VAR = "R1SFT_PACKED_ATTENTION"
ANNOUNCEMENT = "packed samples attend through varlen attention"
FALLBACK = "LLaMA-Factory's dense mask is used"
ROW_CHUNK = 2048  # rows of the mask checked at a time: bounds the check's temporaries to ROW_CHUNK x L booleans
PACK_MULTIPLE = 64  # a pack's length, after its padding is cut (see _pack_without_a_mask)
UNMASKED_ROW_TOKENS = 32768  # unpacked rows longer than this leave the collator without a mask (1 GiB at 32k)

log = logging.getLogger("r1sft.patches.packed_attention")
COLLATOR_MODULE = "llamafactory.data.collator"
_state: dict[str, Any] = {"original": None, "mask": None, "segments": None, "calls": 0, "fallbacks": 0,
                          "position_calls": 0, "positions": None, "position_segments": None, "collator": None,
                          "finder": None, "preprocess": None}


def enabled_by_env(environ: Mapping[str, str] | None = None) -> bool:
    return (os.environ if environ is None else environ).get(ENV_VAR, "").strip().lower() == "varlen"


def wanted(config: Mapping[str, Any], environ: Mapping[str, str], plan: LaunchPlan) -> str | None:
    # Packed samples: the dense block-diagonal mask as varlen attention is 5x faster
    # (docs/bench/h100-liger-chunking/packed_attention_check.md). Padded samples: no copy of the L x L mask kept per
    # layer (docs/bench/h200-long-traces/attention-memory-1.5b.md). CPU runs keep transformers' sdpa.
    if config.get("neat_packing"):
        return "neat_packing"
    if config.get("use_cpu") or str(config.get("flash_attn", "auto")) not in ("auto", "sdpa"):
        return None
    return "padded batches on a GPU"


def on_value(plan: LaunchPlan) -> str:
    return "varlen"


def install() -> bool:
    """Register the packed-aware ``sdpa`` (idempotent). Returns False where this torch has no varlen kernel."""
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401 - availability check
    except ImportError:
        log.warning("r1sft: torch has no torch.nn.attention.varlen (needs torch >= 2.10); keeping dense sdpa")
        return False
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.modeling_utils import AttentionInterface

    if _state["original"] is None:
        _state["original"] = sdpa_attention_forward
        AttentionInterface.register("sdpa", packed_sdpa_attention_forward)
        _hide_packed_positions_from_sdpa_masks()
        _state["finder"] = on_import.when_imported(COLLATOR_MODULE, _collate_packs_without_a_mask)
        log.info("r1sft: packed documents attend through varlen attention (%s=varlen)", ENV_VAR)
    return True


def _collate_packs_without_a_mask(module) -> None:
    """Wrap LLaMA-Factory's 4D-mask collator: a batch of one row padded at its end leaves it without an L x L
    mask where one would be built (LLaMA-Factory's for a pack: 8 GiB at 64k tokens; transformers' boolean one for
    an unpacked row padded to a multiple of 8: 16 GiB at 128k): a pack with positions that restart with every
    document (``_pack_without_a_mask``), an unpacked row longer than UNMASKED_ROW_TOKENS without its padding (as
    LLaMA-Factory's FlashAttention-2 path makes it; sdpa then runs it causal). Anything else as LLaMA-Factory makes
    it: at 16k tokens unpacked rows trained faster with their mask (1.5B full SFT: 25,033 tokens/s,
    docs/bench/h200-2026-12-04/gpu80-1.5b-16k.md) than without (14,186 through sdpa, 19,296 through the varlen
    kernel, docs/bench/h200-2026-12-04b/), at 64k faster without (7B LoRA: 51.7% MFU against 43.6%,
    docs/bench/h200-2026-12-04b/7b-lora-64k-without-mask.md against docs/bench/h200-2026-12-04/7b-lora-64k.md)."""
    cls = module.SFTDataCollatorWith4DAttentionMask
    if _state["collator"] is not None:
        return
    original = cls.__call__

    @functools.wraps(original)
    def collate(self, features):
        if self.attn_implementation == "flash_attention_2" or getattr(self, "keep_2d_mask", False):
            return original(self, features)
        packed = self.block_diag_attn
        self.block_diag_attn = False  # a pack's 2D mask numbers its documents: 1, 2, ...; padding 0
        try:
            batch = original(self, features)
        finally:
            self.block_diag_attn = packed
        mask = batch.get("attention_mask")
        one_row = mask is not None and mask.dim() == 2 and mask.shape[0] == 1 and _padded_at_the_end(mask[0])
        if one_row and packed:
            _pack_without_a_mask(batch, mask)
        elif one_row and mask.shape[1] > UNMASKED_ROW_TOKENS:
            self._unpad_packed_features(batch)
            batch["attention_mask"] = None
        elif packed:  # LLaMA-Factory's own 4D mask
            batch["attention_mask"] = module.prepare_4d_attention_mask(mask, self.compute_dtype)
        return batch

    _state["collator"] = (cls, original)
    cls.__call__ = collate


def _pack_without_a_mask(batch, mask) -> None:
    """A pack for varlen attention from its positions: cut after its real tokens to a multiple of PACK_MULTIPLE
    (LLaMA-Factory pads every pack to the cutoff), its padding one run of positions (LLaMA-Factory gives each
    padding token position 0: one segment per token), no mask. Against this, padding to the cutoff gave the 1.5B
    full SFT plan 12% fewer tokens/s, no padding at all (lengths of any value) 44% fewer
    (docs/bench/h200-2026-12-04b/README.md)."""
    import torch

    real = int((mask[0] != 0).sum())
    keep = min(mask.shape[1], -(-real // PACK_MULTIPLE) * PACK_MULTIPLE)
    positions = batch.get("position_ids")
    batch["position_ids"] = positions.clone() if positions is not None and positions.shape == mask.shape \
        else row_positions(mask)
    for key, value in list(batch.items()):
        if torch.is_tensor(value) and value.dim() == 2 and value.shape[1] == mask.shape[1]:
            batch[key] = value[:, :keep]
    batch["position_ids"][0, real:] = torch.arange(keep - real)
    batch["attention_mask"] = None


def _padded_at_the_end(row) -> bool:
    """Whether a row's 2D mask (documents 1, 2, ...; padding 0) has its padding only after its real tokens."""
    real = int((row != 0).sum())
    return bool((row[:real] != 0).all())


def _hide_packed_positions_from_sdpa_masks() -> None:
    """transformers 5 turns restarting ``position_ids`` without a mask into a dense block-diagonal sdpa mask
    (``masking_utils.find_packed_sequence_indices``): for sdpa, whose calls this module answers from the positions,
    it is not asked to (the mask would be L x L booleans: 4 GiB at 64k tokens)."""
    import inspect

    from transformers import masking_utils

    original = getattr(masking_utils, "_preprocess_mask_arguments", None)
    if original is None or "position_ids" not in inspect.signature(original).parameters:
        return  # another transformers: its mask is built, and recognised as block-diagonal, as before
    signature = inspect.signature(original)

    @functools.wraps(original)
    def preprocess(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        config = bound.arguments.get("config")
        if bound.arguments.get("attention_mask") is None and getattr(config, "_attn_implementation", None) == "sdpa":
            bound.arguments["position_ids"] = None
        return original(*bound.args, **bound.kwargs)

    _state["preprocess"] = (masking_utils, original)
    masking_utils._preprocess_mask_arguments = preprocess


def uninstall() -> None:
    """Give ``sdpa`` back to transformers (for tests)."""
    from transformers.modeling_utils import AttentionInterface

    if _state["original"] is not None:
        AttentionInterface.register("sdpa", _state["original"])
    if _state["collator"] is not None:
        cls, original = _state["collator"]
        cls.__call__ = original
    if _state["preprocess"] is not None:
        module, original = _state["preprocess"]
        module._preprocess_mask_arguments = original
    on_import.remove(_state["finder"])
    _state.update(original=None, mask=None, segments=None, positions=None, position_segments=None, collator=None,
                  finder=None, preprocess=None)


def stats() -> dict[str, int]:
    """How many attention calls took the varlen path and how many masks were not block-diagonal (fell back)."""
    return {"varlen_calls": _state["calls"], "fallbacks": _state["fallbacks"],
            "from_positions": _state["position_calls"]}


def report() -> None:
    """One line on stderr at exit: how the packed batches were attended (only where any were)."""
    import sys

    counts = stats()
    if counts["varlen_calls"] or counts["fallbacks"]:
        print(f"r1sft: packed attention: {counts['varlen_calls']} varlen calls ({counts['from_positions']} of packs "
              f"without a mask), {counts['fallbacks']} masks that were not block-diagonal went to dense sdpa",
              file=sys.stderr)


def document_segments(mask):
    """Document boundaries of a block-diagonal causal 4D mask, or None when ``mask`` is anything else.

    ``mask``: (batch, 1, L, L), additive float (0 = attend, as LLaMA-Factory's ``prepare_4d_attention_mask``
    writes it) or boolean (True = attend, as transformers' padding masks). Returns ``(cu_seqlens, max_len)`` over
    the flattened batch: int32 offsets of every document, with each run of padding (a token that does not attend
    to itself) as one segment of its own, and the longest segment. Every real token's row of the mask is compared
    with the one these boundaries imply; padding rows are not (LLaMA-Factory's attend to nothing, transformers'
    to the real tokens before them; no real token attends to a padding token either way).
    """
    import torch

    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[-1] != mask.shape[-2]:
        return None
    allowed = mask[:, 0] if mask.dtype == torch.bool else mask[:, 0] == 0
    batch, length = allowed.shape[0], allowed.shape[-1]
    valid = allowed.diagonal(dim1=-2, dim2=-1)  # a padding token attends to nothing, not even itself
    joined = torch.zeros_like(valid)  # token i continues the document of token i-1
    joined[:, 1:] = allowed.diagonal(offset=-1, dim1=-2, dim2=-1) & valid[:, 1:] & valid[:, :-1]
    padding_run = torch.zeros_like(valid)
    padding_run[:, 1:] = ~valid[:, 1:] & ~valid[:, :-1]
    starts = ~(joined | padding_run)
    starts[:, 0] = True
    segment = starts.flatten().cumsum(0).view(batch, length)

    positions = torch.arange(length, device=mask.device)
    mismatch = torch.zeros(1, dtype=torch.bool, device=mask.device)
    for row in range(0, length, ROW_CHUNK):
        rows = slice(row, min(row + ROW_CHUNK, length))
        expected = (segment[:, rows, None] == segment[:, None, :]) & (positions[None, rows, None]
                                                                     >= positions[None, None, :])
        expected &= valid[:, rows, None] & valid[:, None, :]
        mismatch |= ((expected != allowed[:, rows]) & valid[:, rows, None]).any()

    # One wait for the GPU per forward (the verdict and the boundaries come back together): every host sync
    # leaves the GPU idle while the next kernels are launched.
    host = torch.cat([mismatch, starts.flatten()]).cpu()
    if host[0]:
        return None
    offsets = torch.nonzero(host[1:]).flatten()
    cu_seqlens = torch.cat([offsets, torch.tensor([batch * length])]).to(torch.int32)
    max_len = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    if mask.is_cuda:  # from pinned memory, the copy does not wait either
        cu_seqlens = cu_seqlens.pin_memory()
    return cu_seqlens.to(mask.device, non_blocking=True), max_len


def trace_segments(positions):
    """(cu_seqlens over the flattened batch, longest) of the documents whose positions restart, or None when
    every row is one run (then causal attention over the row is the same thing)."""
    import torch

    starts = torch.ones_like(positions, dtype=torch.bool)
    starts[:, 1:] = positions[:, 1:] != positions[:, :-1] + 1
    host = starts.flatten().cpu()  # one wait for the GPU per forward, not per layer
    if int(host.sum()) == positions.shape[0]:
        return None
    offsets = torch.nonzero(host).flatten()
    cu_seqlens = torch.cat([offsets, torch.tensor([host.numel()])]).to(torch.int32)
    max_len = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    return cu_seqlens.to(positions.device), max_len


def row_positions(mask):
    """position_ids for LLaMA-Factory's 2D attention mask: 0..L-1 per row (what the model computes itself) for
    unpacked rows; for packed rows (documents numbered 1, 2, ...; padding 0) positions that restart with every
    document and with the padding, so the attention can tell the documents apart."""
    import torch

    rows, length = mask.shape
    index = torch.arange(length).expand(rows, length)
    change = torch.ones_like(mask, dtype=torch.bool)
    change[:, 1:] = mask[:, 1:] != mask[:, :-1]
    start = torch.where(change, index, torch.zeros_like(index)).cummax(dim=1).values
    packed = (mask > 1).any(dim=1, keepdim=True)
    return torch.where(packed, index - start, index)


def _cached_position_segments(positions):
    if _state["positions"] is not positions:  # one position_ids tensor per forward, shared by every layer
        _state["positions"], _state["position_segments"] = positions, trace_segments(positions)
    return _state["position_segments"]


def _cached_segments(mask):
    if _state["mask"] is not mask:  # one mask per forward, shared by every layer: compute once
        _state["mask"], _state["segments"] = mask, document_segments(mask)
    return _state["segments"]


def _attend_reference(query, key, value, cu_seqlens, scaling):
    """Per-document causal SDPA: what the varlen kernel computes, for devices without it (CPU tests)."""
    import torch
    import torch.nn.functional as F

    outputs = []
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        q, k, v = (t[start:end].transpose(0, 1) for t in (query, key, value))  # (heads, T, d)
        if k.shape[0] != q.shape[0]:
            k = k.repeat_interleave(q.shape[0] // k.shape[0], dim=0)
            v = v.repeat_interleave(q.shape[0] // v.shape[0], dim=0)
        outputs.append(F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling).transpose(0, 1))
    return torch.cat(outputs, dim=0)


def packed_sdpa_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                                  is_causal=None, **kwargs):
    """transformers' ``sdpa`` signature: query (batch, heads, L, d); returns ((batch, L, heads, d), None)."""
    original = _state["original"]
    positions = kwargs.get("position_ids")
    if (attention_mask is None and positions is not None and positions.dim() == 2 and query.shape[2] > 1
            and query.shape[2] == key.shape[2] == positions.shape[-1]):
        segments = _cached_position_segments(positions)  # a pack without a mask (the collator above)
        if segments is not None:
            if dropout or kwargs.get("sliding_window"):  # neither is what the varlen call below computes
                raise RuntimeError("r1sft: packed attention: attention dropout or a sliding window on packs without "
                                   "a mask; R1SFT_PACKED_ATTENTION=off keeps LLaMA-Factory's dense mask")
            _state["calls"] += 1
            _state["position_calls"] += 1
            return attend_segments(query, key, value, *segments, scaling), None
    usable = (attention_mask is not None and attention_mask.ndim == 4 and dropout == 0.0
              and query.shape[2] == key.shape[2] == attention_mask.shape[-1] and query.shape[2] > 1
              and not kwargs.get("sliding_window"))
    segments = _cached_segments(attention_mask) if usable else None
    if segments is None:
        if usable:
            _state["fallbacks"] += 1
        return original(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                        is_causal=is_causal, **kwargs)
    _state["calls"] += 1
    return attend_segments(query, key, value, *segments, scaling), None


def attend_segments(query, key, value, cu_seqlens, max_len: int, scaling):
    """Causal attention within each segment of the flattened batch (``cu_seqlens`` over batch x L tokens).
    query (batch, heads, L, d), key/value (batch, kv_heads, L, d); returns (batch, L, heads, d). Also what
    r1sft.patches.sequence_parallel runs over a whole trace's packed documents."""
    batch, heads, length, dim = query.shape
    flat = [t.transpose(1, 2).reshape(batch * length, t.shape[1], dim) for t in (query, key, value)]
    if query.is_cuda:
        from torch.nn.attention.varlen import varlen_attn

        out = varlen_attn(*flat, cu_seqlens, cu_seqlens, max_len, max_len, scale=scaling, window_size=(-1, 0))
    else:
        out = _attend_reference(*flat, cu_seqlens, scaling)
    return out.view(batch, length, heads, dim)
