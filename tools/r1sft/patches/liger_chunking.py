"""Fewer, larger chunks for liger's fused linear cross-entropy, within a fixed memory budget.

liger's fused linear cross-entropy (``enable_liger_kernel: true``) never holds the whole ``tokens x vocabulary``
logits: it walks the micro-batch's tokens in chunks sized so that one chunk's logits are about as large as the
hidden states (``chunk_mem_const=1``, liger's default). With Qwen's 152k vocabulary that is 1/99 of the tokens of a
1536-wide model per chunk: 64 chunks of 256 tokens for a 16k-token micro-batch. Each chunk is a thin GEMM, and where
the lm_head is trained (full SFT; Qwen2.5-1.5B ties it to the embedding) each chunk re-reads and re-writes the
whole fp32 weight gradient (0.9 GB) and re-casts the fp32 weight to bf16: 122 ms per 16k tokens on an H100, against
43 ms in 8 chunks of 2,048 tokens (``bench/liger_chunk_check.py``), of a ~600 ms step.

liger takes the chunk size as a parameter of its public functional API (``chunk_mem_const``: a chunk's logits are
bounded by ``chunk_mem_const x tokens x hidden`` elements). ``install()`` wraps
``liger_kernel.transformers.functional.liger_fused_linear_cross_entropy``, which every model liger patches calls
at run time, so that a call that does not choose ``chunk_mem_const`` itself gets the largest one whose chunk
logits stay within ``LOGITS_BUDGET_BYTES``. Only the order in which the same per-token terms are summed changes.

``r1sft train`` turns it on for recipes with ``enable_liger_kernel: true`` (``R1SFT_LIGER_CHUNKING=budget``, read by
``r1sft/patches/site/sitecustomize.py`` in every process the launch starts); ``R1SFT_LIGER_CHUNKING=off`` keeps liger's
default. The planner's memory model counts the same budget (``r1sft.recipe.memory``).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from r1sft.patches.registry import LaunchPlan

ENV_VAR = "R1SFT_LIGER_CHUNKING"
ANNOUNCEMENT = "liger's cross-entropy in chunks of up to 1 GiB of logits"
FALLBACK = "liger's default chunks are used"
# One chunk's bf16 logits. On an H100 (bench/liger_chunk_check.py, 16k tokens of Qwen2.5-1.5B full SFT) 1 GiB gives
# 8 chunks and 43 ms per forward+backward against liger's 64 chunks and 122 ms, with less transient memory than
# liger's default (whose per-chunk fp32 weight casts cost more); 2-8 GiB gain 2-4 ms more.
LOGITS_BUDGET_BYTES = 2**30
LOGITS_BYTES = 2  # liger computes a chunk's logits (and their gradient, in place) in the activations' bf16

log = logging.getLogger("r1sft.patches.liger_chunking")
_state: dict[str, Any] = {"original": None, "calls": 0, "chunks": None}


def _next_power_of_2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def chunk_tokens(tokens: int, hidden: int, vocab: int, chunk_mem_const: int = 1) -> int:
    """Tokens per chunk liger uses (the formula of liger 0.8's ``fused_linear_cross_entropy_forward``)."""
    inc_factor = -(-vocab // (chunk_mem_const * hidden))
    return min(_next_power_of_2(-(-tokens // inc_factor)), tokens)


@functools.lru_cache(maxsize=256)  # called once per forward with the same few shapes
def chunk_mem_const(tokens: int, hidden: int, vocab: int, budget_bytes: int = LOGITS_BUDGET_BYTES) -> int:
    """The largest ``chunk_mem_const`` whose chunk logits fit in ``budget_bytes`` (1, liger's default, at least)."""
    best = 1
    for const in range(2, -(-vocab // hidden) + 1):  # past vocab/hidden every token is in one chunk already
        if chunk_tokens(tokens, hidden, vocab, const) * vocab * LOGITS_BYTES > budget_bytes:
            break
        best = const
    return best


def chunk_logits_bytes(tokens: int, hidden: int, vocab: int) -> int:
    """Transient bytes of one chunk's logits, chunked within the budget."""
    return chunk_tokens(tokens, hidden, vocab, chunk_mem_const(tokens, hidden, vocab)) * vocab * LOGITS_BYTES


def enabled_by_env(environ: Mapping[str, str] | None = None) -> bool:
    return (os.environ if environ is None else environ).get(ENV_VAR, "").strip().lower() == "budget"


def wanted(config: Mapping[str, Any], environ: Mapping[str, str], plan: LaunchPlan) -> str | None:
    # 8 chunks instead of 64 at 16k tokens: -80 ms per 16k tokens of Qwen2.5-1.5B full SFT on an H100, same loss
    # and gradients (docs/bench/h100-liger-chunking/liger_chunk_check.md).
    return "enable_liger_kernel on a GPU" if config.get("enable_liger_kernel") and not config.get("use_cpu") else None


def on_value(plan: LaunchPlan) -> str:
    return "budget"


def install() -> bool:
    """Wrap liger's functional fused linear cross-entropy (idempotent). False where liger is not installed."""
    try:
        from liger_kernel.transformers import functional
    except ImportError:
        return False
    if _state["original"] is None:
        original = functional.liger_fused_linear_cross_entropy
        parameters = list(inspect.signature(original).parameters)
        if "chunk_mem_const" not in parameters:  # liger before 0.8 has no such parameter: keep its default
            return False
        positional_index = parameters.index("chunk_mem_const") - 3  # among *args, after input, weight, target

        @functools.wraps(original)  # keeps the signature liger's callers filter their keyword arguments by
        def budgeted_fused_linear_cross_entropy(input, weight, target, *args, **kwargs):  # noqa: A002 - liger's name
            hidden, vocab = input.shape[-1], weight.shape[0]
            chosen = "chunk_mem_const" in kwargs or len(args) > positional_index  # by the caller
            if not chosen and hidden and vocab and input.numel():  # (an empty shape: liger's own handling)
                tokens = input.numel() // hidden
                kwargs["chunk_mem_const"] = const = chunk_mem_const(tokens, hidden, vocab)
                _state["calls"] += 1
                _state["chunks"] = (tokens, chunk_tokens(tokens, hidden, vocab, const), chunk_tokens(tokens, hidden, vocab))
            return original(input, weight, target, *args, **kwargs)

        _state["original"] = original
        functional.liger_fused_linear_cross_entropy = budgeted_fused_linear_cross_entropy
        log.info("r1sft: liger cross-entropy chunks bounded by %.1f GiB of logits", LOGITS_BUDGET_BYTES / 2**30)
    return True


def report() -> None:
    """One line on stderr at exit: how the last cross-entropy was chunked (only where any ran)."""
    if _state["calls"]:
        tokens, chunk, default = _state["chunks"]
        print(f"r1sft: liger cross-entropy: {_state['calls']} calls; the last, {tokens} tokens, in chunks of {chunk} "
              f"tokens (liger's default: {default})", file=sys.stderr)


def uninstall() -> None:
    """Give liger its function back (for tests)."""
    if _state["original"] is not None:
        from liger_kernel.transformers import functional

        functional.liger_fused_linear_cross_entropy = _state["original"]
    _state.update(original=None, calls=0, chunks=None)
