"""Peak memory of one training process (one GPU, or the CPU), estimated from the model's shape.

The planner uses this to choose DeepSpeed, gradient checkpointing and the per-device batch; a benchmark can call
:func:`estimate_memory` with the settings it ran and compare ``peak`` with the measured peak (nvidia-smi).

What is counted, and why (bytes; N parameters, T = micro batch x sequence tokens, L layers, h hidden, V vocab):

* Model states, per DeepSpeed's own estimators where DeepSpeed is used
  (``estimate_zero2/3_model_states_mem_needs``): ZeRO-0/1/2 ``2N + 18N/g``, ZeRO-3 ``4 x largest module +
  18N/g`` plus the bf16 parameters it keeps gathered (``stage3_max_live_parameters``), ZeRO-3 with optimizer and
  parameters offloaded the same without the ``18N/g``, which moves to host RAM. Without DeepSpeed LLaMA-Factory upcasts trainable weights to fp32: full SFT holds fp32 weights (4N), fp32
  gradients (4N) and AdamW moments (8N); torch's foreach AdamW allocates one more fp32 buffer (4N) while stepping,
  and autocast caches a bf16 copy of every weight (2N) until the forward pass ends. The peak is the largest of
  three moments: the end of the forward pass (with the gradients of earlier micro-batches under gradient
  accumulation), late in the backward (every gradient, the checkpoints, not the whole layers' activations) and the
  optimizer step. LoRA: frozen bf16 weights plus those states for the adapters;
  QLoRA: NF4 weights (~0.53 bytes per linear parameter with double quantization), embeddings in bf16.
* Activations, per token and layer, counted from the tensors HF's Qwen2/Qwen3/Llama layers keep for backward with
  SDPA attention: each RMSNorm keeps an fp32 copy of its input plus its normalised output, attention keeps q, k, v,
  its output and the o_proj input, the SwiGLU MLP keeps four intermediate-sized tensors (gate, SiLU, up,
  product). LoRA dropout keeps a dropped-out copy (and mask) of every adapted layer's input; DoRA keeps the base
  and LoRA outputs. With gradient checkpointing only each layer's input is kept, plus one layer's full activations
  while it is recomputed; offloaded (``use_unsloth_gc``, r1sft.patches.offloaded_checkpointing) those inputs live in
  host RAM, and only the one being recomputed is back on the GPU. A tiled MLP (r1sft.patches.tiled_mlp) keeps its
  input and, in the backward, one tile's intermediate-sized tensors instead of the whole sequence's.
* Mixture of experts (Qwen3-MoE): every expert's weights count in the model states (``Shape.total_params``: 30.5B
  for Qwen3-30B-A3B), only the routed ones in a token's activations (its experts_per_token x moe_intermediate MLP
  width, plus the router's logits and the routed copies) and in FLOPs (``Shape.active_params``: 3.3B).
* Logits: without liger, the bf16 logits, their fp32 upcast, log-softmax and gradients: ~12 bytes per token per
  vocabulary entry (31 GB at 16k tokens for a 152k vocabulary). Liger's fused linear cross-entropy works in chunks
  and removes that term, leaving one chunk (~1 GiB, r1sft.patches.liger_chunking).

Calibration (``ACTIVATION_FACTOR``, ``LOGIT_BYTES``, ``CUDA_OVERHEAD``) comes from H100 measurements of random-init
Qwen2.5-1.5B (batch 1, samples up to ~15k tokens) taken before ``make bench`` existed (their raw output is not in
this repository): full SFT + liger without DeepSpeed peaks at 29.4 GiB with checkpointing (model here: 29.8) and
75.3 GiB without (model: 74.5 at 15k tokens); ZeRO-3 on one GPU with liger 34.0 GiB (model: 33.2) and without liger
60.4 GiB (model: 58.3). The factor covers the allocator's fragmentation and the tensors the count misses. The
benchmark's runs of the same model, with the estimate next to each peak: docs/bench/h100-explore-1.5b.md,
docs/bench/h100-planned-tuned-1.5b.md and, for the current code, docs/bench/h100-fused-lora/1.5b-full-recheck.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from r1sft.patches import liger_chunking
from r1sft.patches.tiled_mlp import tiles as mlp_tile_count
from r1sft.presets import Shape

GIB = 1024**3

# Measured/actual ratio for activations (see module docstring): fragmentation and uncounted temporaries.
ACTIVATION_FACTOR = 1.2
# Full SFT without DeepSpeed, with the gradients of earlier micro-batches counted: Qwen2.5-1.5B on an H200 kept
# 0.94x (16k packs) to 1.01x (32k samples) of the count (docs/bench/h200-2026-12-04/gpu80-1.5b-16k.md,
# docs/bench/h200-long-traces/1.5b-full-32k-varlen.md); 1.2 only hid the missing gradients.
FULL_AUTOCAST_ACTIVATION_FACTOR = 1.0
# LoRA's count is what an H100 measured (Qwen2.5-7B, 16k-token packs: 3.4 GiB per layer kept whole, 228 KB per
# token; docs/bench/h100-partial-checkpointing/7b-keep-layers.md); 5% for the allocator. QLoRA and DoRA keep
# the general factor.
LORA_ACTIVATION_FACTOR = 1.05
# A layer's backward holds the gradients of its MLP's gate, up and product (intermediate-sized) beside everything
# kept: 3.6 GiB at 32k tokens of Qwen2.5-7B, the gap of 32k packs with 11 layers kept on an emulated 80 GB GPU
# (docs/bench/h200-2026-12-04/gpu80-32k.md: 74.8 GiB measured, 69.9 estimated without it).
BACKWARD_MLP_TENSORS = 3
# Bytes per (token x vocabulary entry) held around the loss without a fused cross-entropy.
LOGIT_BYTES = 12
# CUDA context, cuBLAS/NCCL workspaces and the caching allocator's slack that every process pays.
CUDA_OVERHEAD = 1.0 * GIB
# Python, torch and the tokenizer of a CPU training process.
CPU_OVERHEAD = 1.0 * GIB
# A one-process run's own host RAM beside what its plan offloads and the bf16 weights it loads through host RAM
# (CUDA context, libraries, the dataset): 50.8 GiB peak RSS - 24.5 offloaded - 14.2 of weights, Qwen2.5-7B LoRA at
# 128k (docs/bench/h200-2026-12-04b/7b-lora-128k-gpu80.md)
PROCESS_HOST_RAM = 12.0 * GIB
# LLaMA-Factory's ZeRO-0/2 configs use 5e8-element all-gather and reduce buckets.
ZERO12_BUCKETS = 2 * 5e8 * 2
# ZeRO-3 gathers up to stage3_max_live_parameters (1e9 in ds_configs/z3*.json) bf16 parameters at a time.
ZERO3_LIVE_PARAMS = 1e9
# NF4 with double quantization: 4 bits per weight + absmax (8-bit, per 64) + second-level constants.
NF4_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256)


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak memory of one process, with the parts that make it up at the peak."""

    peak: float
    phase: str  # "end of forward", "backward" or "optimizer step"
    parts: dict[str, float]
    host: float = 0.0  # offloaded bytes in host RAM for the whole node
    notes: tuple[str, ...] = field(default=())

    @property
    def peak_gib(self) -> float:
        return self.peak / GIB

    def breakdown(self) -> str:
        """``weights 14.2 + activations 20.3 + ...`` in GiB, the parts that are non-zero at the peak."""
        return " + ".join(f"{name} {value / GIB:.1f}" for name, value in self.parts.items() if value >= 0.05 * GIB)


def activation_bytes_per_token_layer(
    shape: Shape,
    *,
    method: str = "full",
    residual_bytes: int = 2,
    act_bytes: int = 2,
    micro_batch: int = 1,
    lora_dropout: float = 0.05,
    liger: bool = False,
    fused_lora: bool = False,
    mlp_tiles: int = 1,
) -> float:
    """Bytes one decoder layer keeps for backward per token, without gradient checkpointing (before the factor).

    Liger's fused RMSNorm keeps its fp32 input and one bf16 output (6h, not 8h) and its fused SwiGLU keeps gate, up
    and one product (6I, not 8I): calibrated on an H100 (Qwen2.5-1.5B full SFT, docs/bench/h100-explore-1.5b.md).
    ``mlp_tiles``: the MLP computed in that many tiles (r1sft.patches.tiled_mlp) keeps its input, and one tile's
    intermediate tensors while a tile's backward runs (counted here per token: 1/tiles of them).
    """
    h, q = shape.hidden, shape.q_dim
    # A MoE layer runs each token through experts_per_token experts of width moe_intermediate
    i = shape.experts_per_token * shape.moe_intermediate if shape.moe else shape.intermediate
    # With a padding mask (micro batch > 1) transformers repeats k/v to every head before SDPA.
    kv = shape.kv_dim if micro_batch == 1 else q
    # A frozen linear (LoRA's base layers) keeps no input for backward: autograd saves a matmul operand only for
    # the other operand's gradient. H100, Qwen2.5-7B LoRA: 228 KB per token and layer measured, as counted here.
    linear_input = act_bytes if method == "full" else 0
    # fp32 input copy, normalised output, cast for the linear; liger's fused norm keeps its input (+ the linear's)
    if liger:  # full SFT: calibrated on Qwen2.5-1.5B (docs/bench/h100-explore-1.5b.md); LoRA: its bf16 input only
        norm = 4 * h + act_bytes * h if method == "full" else residual_bytes * h
    else:
        norm = 4 * h + residual_bytes * h + linear_input * h
    total = 2 * norm
    if shape.qk_norm:
        total += (4 + act_bytes) * (q + shape.kv_dim)
    total += act_bytes * (2 * q + 2 * kv) + linear_input * q  # q, k after RoPE, v, SDPA output; o_proj's input
    fused = method == "lora" and fused_lora
    # gate, SiLU(gate) (not kept by liger, nor by r1sft.patches.fused_lora's MLP), up; their product is down_proj's input
    mlp = (2 if (liger or fused) and not shape.moe else 3) * act_bytes * i + linear_input * i
    total += mlp if mlp_tiles <= 1 else mlp / mlp_tiles + act_bytes * h
    if shape.moe:  # the router's fp32 logits, each routed copy of the token's input and each expert's output
        total += 4 * shape.experts + 2 * shape.experts_per_token * act_bytes * h
    if fused:
        # r1sft.patches.fused_lora keeps the adapted linears' inputs, once per tensor: the normalised input of q/k/v and of
        # gate/up (o_proj's is SDPA's output, down_proj's is computed again from gate and up), no dropout copies
        total += act_bytes * 2 * h
    elif method in ("lora", "qlora", "dora") and lora_dropout > 0:
        total += (act_bytes + 1) * sum(fan_in for _, fan_in, _ in shape.linears())  # dropout output + mask
    elif method in ("lora", "qlora", "dora"):
        # PEFT's lora_A keeps its input where no dropout copies it: the normalised input of q/k/v and (dense MLPs,
        # which MoE LoRA does not adapt) of gate/up, once per tensor, and down_proj's input (o_proj's is SDPA's)
        total += act_bytes * (h if shape.moe else 2 * h + i)
    if method == "dora":
        total += 2 * act_bytes * sum(fan_out for _, _, fan_out in shape.linears())  # base and LoRA results
    return float(total)


def estimate_memory(
    shape: Shape,
    *,
    method: str,
    seq_len: int,
    micro_batch: int = 1,
    world_size: int = 1,
    zero_stage: int | None = None,
    offload: bool = False,
    gradient_checkpointing: bool = True,
    liger: bool = True,
    bf16: bool = True,
    on_gpu: bool = True,
    lora_rank: int = 64,
    lora_dropout: float = 0.05,
    resize_vocab: bool = False,
    gpus_per_node: int | None = None,
    uncheckpointed_layers: int = 0,
    fused_lora: bool = False,
    sequence_parallel: int = 1,
    grad_accum: int = 1,
    offload_checkpoints: bool = False,
    mlp_tile_tokens: int = 0,
) -> MemoryEstimate:
    """Peak bytes of one training process for ``method`` (full, lora, qlora, dora).

    ``zero_stage`` None means no DeepSpeed (plain PyTorch/DDP); 0, 2 or 3 a DeepSpeed ZeRO stage, ``offload``
    ZeRO-3 with optimizer and parameters in host RAM. ``seq_len`` is the longest sample (cutoff_len) and
    ``micro_batch`` the per-device batch, so T = seq_len x micro_batch tokens are live at once.
    ``uncheckpointed_layers``: with checkpointing, that many layers keep all their activations
    (r1sft.patches.partial_checkpointing). ``fused_lora``: LoRA's linears run as r1sft.patches.fused_lora's autograd function.
    ``sequence_parallel``: each trace split over that many GPUs (r1sft.patches.sequence_parallel): a GPU holds
    1/N of the tokens' activations and logits. Between its two all-to-alls attention holds all the tokens for 1/N
    of the heads, the same bytes as all the heads for 1/N of the tokens, so the per-token count stands.
    ``grad_accum``: micro-batches per optimizer step; from the second on, the forward runs beside the gradients
    the earlier ones accumulated. ``offload_checkpoints``: the checkpointed layers' inputs in pinned host RAM
    (``host``), one at a time on the GPU while its layer is recomputed. ``mlp_tile_tokens``: the dense MLP
    computed in tiles of that many tokens of the sequence (r1sft.patches.tiled_mlp; 0: at once).
    """
    if method not in ("full", "lora", "qlora", "dora"):
        raise ValueError(f"unknown method {method!r}")
    g = max(1, world_size)
    tokens = -(-seq_len // max(1, sequence_parallel)) * micro_batch
    half = 2 if bf16 else 4  # bytes of a weight/activation in the compute dtype
    notes: list[str] = []

    # ---- trainable parameters -------------------------------------------------------------------------------
    if method == "full":
        trainable = shape.total_params
    else:
        trainable = shape.lora_params(lora_rank)
        if method == "dora":
            trainable += shape.dora_magnitude_params()
        if resize_vocab:  # LLaMA-Factory trains full copies of embed_tokens and lm_head (modules_to_save)
            trainable += 2 * shape.embedding_params
            notes.append("new special tokens: embed_tokens and lm_head become fully trainable copies")

    states = _model_states(shape, method, trainable, half, zero_stage, offload, g, gpus_per_node, notes)
    weights, grads, optim = states["weights"], states["gradients"], states["optimizer"]
    extra_fwd, extra_step, other, host = states["autocast"], states["step"], states["other"], states["host"]

    activations, whole_layers, offloaded = _activation_bytes(
        shape, method, tokens, micro_batch, half, zero_stage, bf16, liger and on_gpu, lora_dropout, fused_lora,
        gradient_checkpointing, uncheckpointed_layers, offload_checkpoints and on_gpu,
        mlp_tile_count(-(-seq_len // max(1, sequence_parallel)), mlp_tile_tokens) if not shape.moe else 1)
    host += offloaded

    # ---- logits ----------------------------------------------------------------------------------------------
    if liger:
        # The input gradient, one chunk's bf16 logits (their gradient is written in place) and one chunk-sized
        # temporary, chunked as r1sft.patches.liger_chunking sizes them under `r1sft train` (never smaller than liger's
        # default). bench/liger_chunk_check.py on an H100: 594 MiB above the inputs for a 2,048-token chunk of 152k.
        logits = tokens * shape.hidden * 4 + 2 * liger_chunking.chunk_logits_bytes(tokens, shape.hidden, shape.vocab)
    else:
        logits = LOGIT_BYTES * tokens * shape.vocab

    other += CUDA_OVERHEAD if on_gpu else CPU_OVERHEAD

    forward = {
        "weights": weights,
        # DeepSpeed's gradient partitions persist; without it, the gradients of earlier micro-batches do
        "gradients": grads if zero_stage is not None or grad_accum > 1 else 0.0,
        "optimizer": optim,
        "autocast copies": extra_fwd,
        "activations": activations,
        "logits": logits,
        "other": other,
    }
    # Late in the backward every gradient exists, the whole layers' activations are gone (they are the last layers,
    # the first the backward frees) and the checkpoints of the first layers are still alive: what a checkpointed
    # plan with one micro-batch per step peaks at (Qwen2.5-1.5B, 32k packs: docs/bench/h200-2026-12-04/gpu80-32k.md).
    backward = {**forward, "gradients": grads, "activations": activations - whole_layers}
    step = {
        "weights": weights,
        "gradients": grads,
        "optimizer": optim + extra_step,
        "other": other,
    }
    phase, parts = max((("end of forward", forward), ("backward", backward), ("optimizer step", step)),
                       key=lambda item: sum(item[1].values()))  # the first of equal peaks
    return MemoryEstimate(peak=sum(parts.values()), phase=phase, parts=parts, host=host, notes=tuple(notes))


def _model_states(shape: Shape, method: str, trainable: float, half: int, zero_stage: int | None, offload: bool,
                  g: int, gpus_per_node: int | None, notes: list[str]) -> dict[str, float]:
    """Bytes of weights, gradients and optimizer states per process (``autocast``: autocast's weight copies held
    in the forward; ``step``: the optimizer's temporary; ``host``: offloaded to host RAM)."""
    n = shape.total_params
    frozen = n if method != "full" else 0
    if method == "qlora":
        linear = shape.layers * shape.linear_params_per_layer
        frozen_bytes = NF4_BYTES_PER_PARAM * linear + half * (n - linear)
        dequant = half * max(f_in * f_out for _, f_in, f_out in shape.linears())  # one layer's weight, unpacked
    else:
        frozen_bytes = half * frozen
        dequant = 0.0
    weights = grads = optim = extra_fwd = extra_step = other = 0.0
    host = 0.0
    if zero_stage is None:
        # LLaMA-Factory upcasts trainable parameters to fp32 unless ZeRO-3 is on.
        weights = frozen_bytes + 4 * trainable
        grads = 4 * trainable
        optim = 8 * trainable
        extra_step = 4 * trainable  # foreach AdamW's temporary
        if half == 2:  # bf16
            extra_fwd = 2 * trainable  # autocast's bf16 copy of the fp32 weights
        if g > 1:
            other += 4 * trainable  # DDP gradient buckets
    elif zero_stage in (0, 1, 2):
        shards = 1 if zero_stage == 0 else g
        weights = frozen_bytes + 2 * trainable  # DeepSpeed keeps bf16 weights
        grads = 6 * trainable / shards  # bf16 gradients + fp32 gradient partition
        optim = 12 * trainable / shards  # fp32 master weights + AdamW moments
        other += ZERO12_BUCKETS
    elif zero_stage == 3:
        gathered = 4 * shape.largest_module_params + 2 * min(ZERO3_LIVE_PARAMS, n)
        if offload:
            weights = 0.0
            host = 18 * trainable + frozen_bytes
            if gpus_per_node and g > gpus_per_node:
                host = host * gpus_per_node / g
            notes.append("optimizer states and parameters offloaded to host RAM")
        else:
            weights = (frozen_bytes + 2 * trainable) / g
            grads = 4 * trainable / g
            optim = 12 * trainable / g
        other += gathered
    else:
        raise ValueError(f"unknown ZeRO stage {zero_stage!r}")
    other += dequant

    return {"weights": weights, "gradients": grads, "optimizer": optim, "autocast": extra_fwd, "step": extra_step,
            "other": other, "host": host}


def _activation_bytes(shape: Shape, method: str, tokens: int, micro_batch: int, half: int, zero_stage: int | None,
                      bf16: bool, liger: bool, lora_dropout: float, fused_lora: bool, gradient_checkpointing: bool,
                      uncheckpointed_layers: int, offload_checkpoints: bool,
                      mlp_tiles: int = 1) -> tuple[float, float, float]:
    """Bytes of activations kept for the backward pass on the device (one recomputed layer's included under
    checkpointing), the part of them that whole (uncheckpointed) layers keep, and the checkpoints offloaded to
    host RAM."""
    # Full SFT without DeepSpeed runs under autocast with fp32 weights: the residual stream is fp32.
    residual = 4 if (method == "full" and zero_stage is None) or not bf16 else 2
    if method == "lora":
        factor = LORA_ACTIVATION_FACTOR
    elif method == "full" and zero_stage is None and bf16:
        factor = FULL_AUTOCAST_ACTIVATION_FACTOR
    else:
        factor = ACTIVATION_FACTOR
    per_layer = factor * activation_bytes_per_token_layer(
        shape,
        method=method,
        residual_bytes=residual,
        act_bytes=half,
        micro_batch=micro_batch,
        lora_dropout=lora_dropout,
        liger=liger,
        fused_lora=fused_lora,
        mlp_tiles=mlp_tiles,
    )
    kept = min(max(uncheckpointed_layers, 0), shape.layers) if gradient_checkpointing else shape.layers
    whole_layers = tokens * kept * per_layer
    activations = whole_layers
    checkpoints = tokens * (shape.layers - kept) * residual * shape.hidden  # each checkpointed layer's input
    offloaded = 0.0
    if offload_checkpoints and kept < shape.layers:  # in host RAM; the one being recomputed is back on the GPU
        offloaded, checkpoints = checkpoints, tokens * residual * shape.hidden
    if kept < shape.layers:  # the checkpoints, and one layer's activations while it is recomputed
        activations += checkpoints + tokens * per_layer
    activations += tokens * 4 * shape.hidden * 2  # embedding output and final norm
    mlp_width = shape.experts_per_token * shape.moe_intermediate if shape.moe else shape.intermediate
    activations += tokens * BACKWARD_MLP_TENSORS * half * mlp_width / mlp_tiles  # one layer's backward temporaries
    return activations, whole_layers, offloaded


def host_ram_needed(estimate: MemoryEstimate, shape: Shape, processes: int) -> float:
    """Host RAM per node a launch of a plan that offloads needs: the offload, and for a one-process run the
    process itself (several processes per node: the offload alone, as DeepSpeed counts it)."""
    if not estimate.host or processes != 1:
        return estimate.host
    return estimate.host + 2 * shape.total_params + PROCESS_HOST_RAM
