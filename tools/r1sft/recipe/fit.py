"""The fitting search: the smallest machinery (DeepSpeed stage, gradient checkpointing, per-device batch) whose
memory estimate (:mod:`.memory`) fits the GPUs, with the reason for each choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from r1sft.errors import R1sftError
from r1sft.patches import fused_lora
from r1sft.presets import Preset
from r1sft.recipe.memory import GIB, MemoryEstimate, estimate_memory
from r1sft.recipe.request import Inputs, Notes, deepspeed_from_path

# name -> (ZeRO stage, offload)
ZERO = {"z0": (0, False), "z2": (2, False), "z3": (3, False), "z3_offload": (3, True)}
# Fraction of GPU memory a plan may fill: the rest absorbs fragmentation spikes the estimate does not see.
HEADROOM = 0.9
# Tokens one micro-batch may hold: beyond this a larger per-device batch mostly adds padding and activations.
MICROBATCH_TOKENS = {"gpu": 16384, "cpu": 2048}
# Full SFT at or above this size uses ZeRO-3, as the anchor recipes did (Sky-T1, OpenThinker).
ZERO3_FULL_FROM = 7e9
# Samples per pack when the data's mean length is unknown (converted without --tokenizer): R1-style traces
# average ~4k tokens (Bespoke-Stratos, OpenThoughts); the bench's synthetic data is log-normal around that.
ASSUMED_MEAN_TOKENS = 4000
# LLaMA-Factory's greedy knapsack fills packs to ~97% of cutoff_len on R1-length data (bench: 5.7 documents of
# mean 2.8k in 16k packs); the estimate of samples per pack uses it.
PACK_FILL = 0.97
METHOD_NAMES = {"lora": "LoRA", "qlora": "QLoRA", "dora": "DoRA", "full": "full"}
# off, on (LLaMA-Factory's checkpointing), on with the checkpoints in host RAM (use_unsloth_gc), and that with the
# MLP computed in tiles (r1sft.patches.tiled_mlp)
Checkpointing = Literal["off", "on", "offloaded", "offloaded_tiled"]
CHECKPOINTING_NAMES = {"off": "off", "on": "on", "offloaded": "on, offloaded to host RAM",
                       "offloaded_tiled": "on, offloaded to host RAM, MLP in tiles"}
# Tokens per MLP tile: GEMMs of 8,192 rows still run at full speed, and 16 tiles cut a 128k trace's MLP tensors 16x.
MLP_TILE_TOKENS = 8192
# Said by the plans that rely on offloading or tiling until a GPU run has checked their estimate.
UNMEASURED = "its memory estimate is not yet checked on a GPU: docs/performance.md, One-GPU runs left to do"
# Offloaded checkpointing is planned for these (their activation counts are measured, docs/performance.md)
OFFLOADABLE_METHODS = ("lora", "full")


@dataclass
class Fit:
    """What fits: the machinery chosen and its memory estimate."""

    deepspeed: str | None
    gradient_checkpointing: bool
    per_device: int
    grad_accum: int
    liger: bool
    memory: MemoryEstimate
    memory_args: dict[str, Any]  # estimate_memory's arguments besides the machinery
    samples_per_pack: float | None  # None: not packed
    packing_source: str = ""  # where the mean length behind samples_per_pack comes from
    offload_checkpoints: bool = False  # use_unsloth_gc: the checkpoints in host RAM
    mlp_tile_tokens: int = 0  # r1sft.patches.tiled_mlp's tiles (0: the MLP at once)

    @property
    def checkpointing(self) -> Checkpointing:
        if not self.gradient_checkpointing:
            return "off"
        if self.offload_checkpoints:
            return "offloaded_tiled" if self.mlp_tile_tokens else "offloaded"
        return "on"


@dataclass(frozen=True)
class _Trial:
    deepspeed: str | None
    checkpointing: Checkpointing
    per_device: int
    memory: MemoryEstimate

    @property
    def gradient_checkpointing(self) -> bool:
        return self.checkpointing != "off"


def fmt_gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"


def fit(inputs: Inputs, notes: Notes, data_dir: Path) -> Fit:
    """The first (DeepSpeed, checkpointing, per-device batch) in order of cost whose estimate fits the budget."""
    samples_per_pack, source = _packing(inputs, notes, data_dir)
    liger = (not inputs.cpu) if inputs.liger_override is None else bool(inputs.liger_override)
    memory_args = _memory_args(inputs, liger)
    pdb_options = [1] if samples_per_pack is not None else _per_device_options(inputs)
    budget = inputs.gpu_mem * GIB * HEADROOM
    tried: list[_Trial] = []
    for ds in _deepspeed_order(inputs):
        for gc in _checkpointing_options(inputs, ds):
            for pdb in pdb_options:
                ga = _grad_accum(inputs, pdb, samples_per_pack)
                tried.append(_Trial(ds, gc, pdb, _estimate(inputs.preset, memory_args, ds, gc, pdb, ga)))
                if tried[-1].memory.peak <= budget:
                    return _chosen(inputs, notes, tried, liger, memory_args, samples_per_pack, source)
    best = min(tried, key=lambda t: t.memory.peak)
    if inputs.deepspeed == "auto":
        raise R1sftError(
            f"{inputs.preset.name} {METHOD_NAMES[inputs.method]} SFT at cutoff {inputs.cutoff} does not fit "
            f"{inputs.ranks} of {inputs.gpu_mem:g} GiB: the smallest plan ({best.deepspeed or 'no DeepSpeed'}, "
            f"gradient checkpointing {CHECKPOINTING_NAMES[best.checkpointing]}, batch {best.per_device}) "
            f"needs ~{fmt_gib(best.memory.peak)} per {'process' if inputs.cpu else 'GPU'} (budget {_limit(inputs)}); "
            f"{_fit_advice(inputs.method, inputs.gc_override, inputs.offload_override)}"
        )
    notes.warnings.append(f"DEEPSPEED={inputs.deepspeed}: estimated {fmt_gib(best.memory.peak)} per GPU exceeds "
                          f"{_limit(inputs)}: expect out-of-memory")
    tried.append(best)
    return _chosen(inputs, notes, tried, liger, memory_args, samples_per_pack, source)


def _chosen(inputs: Inputs, notes: Notes, tried: list[_Trial], liger: bool, memory_args: dict,
            samples_per_pack: float | None, source: str) -> Fit:
    last = tried[-1]
    ga = _grad_accum(inputs, last.per_device, samples_per_pack)
    chosen = Fit(last.deepspeed, last.gradient_checkpointing, last.per_device, ga, liger, last.memory, memory_args,
                 samples_per_pack, source, offload_checkpoints=last.checkpointing.startswith("offloaded"),
                 mlp_tile_tokens=MLP_TILE_TOKENS if last.checkpointing == "offloaded_tiled" else 0)
    _deepspeed_reason(inputs, notes, chosen, tried)
    _checkpointing_reason(inputs, notes, chosen, tried)
    _liger_reason(inputs, notes, chosen)
    _batch_reason(inputs, notes, chosen)
    return chosen


def _grad_accum(inputs: Inputs, per_device: int, samples_per_pack: float | None) -> int:
    if samples_per_pack is None:
        ga = inputs.per_rank // per_device
    else:
        ga = max(1, round(inputs.per_rank / samples_per_pack))
    return ga * inputs.sequence_parallel  # split traces: each loader batch is N micro-batches, one shard of each


def _set_number(inputs: Inputs, key: str, default: float) -> float:
    """A --set number the memory model counts (lora_rank, lora_dropout), else the default; a value of the wrong
    type is refused later, by the check of every --set key against LLaMA-Factory's own."""
    value = inputs.passthrough.get(key, default)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _memory_args(inputs: Inputs, liger: bool) -> dict[str, Any]:
    lora = inputs.defaults["lora"]
    return dict(method=inputs.method, seq_len=inputs.cutoff, world_size=inputs.world, liger=liger,
                bf16=not inputs.cpu, on_gpu=not inputs.cpu, lora_rank=int(_set_number(inputs, "lora_rank", lora["rank"])),
                lora_dropout=float(_set_number(inputs, "lora_dropout", lora["dropout"])),
                resize_vocab=bool(inputs.special_tokens),
                gpus_per_node=max(1, inputs.gpus), sequence_parallel=inputs.sequence_parallel)


def _checkpointing_options(inputs: Inputs, ds: str | None) -> list[Checkpointing]:
    """Gradient checkpointing to try, cheapest first: off, on, and on one GPU without DeepSpeed offloaded to host
    RAM (r1sft.patches.offloaded_checkpointing), then with the MLP in tiles too (r1sft.patches.tiled_mlp), before
    ZeRO-3 offloads the weights; what --set fixes."""
    if inputs.gc_override is not None and bool(inputs.gc_override):  # disable_gradient_checkpointing: true
        return ["off"]
    tiled: list[Checkpointing] = [] if inputs.preset.shape.moe else ["offloaded_tiled"]  # dense MLPs only
    if inputs.offload_override:  # use_unsloth_gc: true
        return ["offloaded", *tiled]
    options: list[Checkpointing] = ["on"] if inputs.gc_override is not None else ["off", "on"]
    if (inputs.offload_override is None and inputs.world == 1 and not inputs.cpu and ds is None
            and inputs.method in OFFLOADABLE_METHODS):
        options += ["offloaded", *tiled]
    return options


def _estimate(preset: Preset, memory_args: dict, ds: str | None, gc: Checkpointing, pdb: int,
              ga: int) -> MemoryEstimate:
    stage, offload = ZERO[ds] if ds else (None, False)
    # What r1sft train runs (the recipe header's launch): plain LoRA through r1sft.patches.fused_lora, which keeps
    # half of PEFT's activations (a 7B LoRA plan on 141 GB estimated with PEFT's layer read +65% of the measured
    # peak, issue 16), and padded batches through varlen attention, so no mask copy per layer is counted.
    fused = memory_args["method"] == "lora" and stage != 3
    return estimate_memory(preset.shape, zero_stage=stage, offload=offload, gradient_checkpointing=gc != "off",
                           offload_checkpoints=gc.startswith("offloaded"),
                           mlp_tile_tokens=MLP_TILE_TOKENS if gc == "offloaded_tiled" else 0, micro_batch=pdb,
                           grad_accum=ga, **{"fused_lora": fused, **memory_args})


def _per_device_options(inputs: Inputs) -> list[int]:
    """Per-device batches to try, largest first: what --set fixes, else the divisors of the per-rank batch whose
    micro-batch stays within MICROBATCH_TOKENS."""
    if inputs.fixed_grad_accum is not None:
        return [inputs.per_rank // (inputs.fixed_grad_accum // inputs.sequence_parallel)]
    if inputs.fixed_per_device is not None:
        return [inputs.fixed_per_device]
    # a rank holds 1/N of each trace's tokens when traces are split
    cap = max(1, MICROBATCH_TOKENS["cpu" if inputs.cpu else "gpu"] * inputs.sequence_parallel // inputs.cutoff)
    return [d for d in range(inputs.per_rank, 0, -1) if inputs.per_rank % d == 0 and d <= cap] or [1]


def _packing(inputs: Inputs, notes: Notes, data_dir: Path) -> tuple[float | None, str]:
    """Samples per cutoff-long pack, from the data's measured mean length (None: not packed)."""
    if not inputs.request.packing:
        return None, ""
    mean_tokens, source = mean_tokens_of(inputs.datasets, data_dir)
    samples_per_pack = max(1.0, inputs.cutoff * PACK_FILL / mean_tokens)
    world, global_batch = inputs.data_parallel, inputs.global_batch
    if samples_per_pack * world > 1.5 * global_batch:  # one pack per rank is the least a step can hold
        notes.warnings.append(
            f"--packing: a {inputs.cutoff}-token pack holds ~{samples_per_pack:.0f} samples of {mean_tokens:.0f} "
            f"tokens, so a step of {world} pack{'s' if world > 1 else ''} holds ~{samples_per_pack * world:.0f} "
            f"samples, over the global batch of {global_batch}: pack to a shorter --cutoff, raise GLOBAL_BATCH, "
            "or do not pack")
    return samples_per_pack, source


def mean_tokens_of(datasets: list[str], data_dir: Path) -> tuple[float, str]:
    """Mean templated tokens per sample over ``datasets`` (row-weighted), from r1sft's registration, and where the
    number comes from; ASSUMED_MEAN_TOKENS where the data was converted without a tokenizer."""
    from r1sft.recipe.data import load_dataset_info

    info = load_dataset_info(data_dir) or {}
    rows = total = 0.0
    assumed = []
    for name in datasets:
        meta = (info.get(name) or {}).get("r1sft") or {}
        mean, count = meta.get("mean_tokens"), meta.get("rows")
        if not (isinstance(count, int) and count > 0):
            count = 1  # not converted by r1sft: weigh it as one dataset among the others
        if not (isinstance(mean, (int, float)) and mean > 0):
            mean = ASSUMED_MEAN_TOKENS  # converted without --tokenizer: the others' measurements still count
            assumed.append(name)
        rows += count
        total += mean * count
    mean = total / rows
    if len(assumed) == len(datasets):
        return float(ASSUMED_MEAN_TOKENS), f"assumed mean of {ASSUMED_MEAN_TOKENS} tokens per sample"
    where = f"; {ASSUMED_MEAN_TOKENS} assumed for {', '.join(assumed)}" if assumed else ""
    return mean, f"measured mean of {mean:,.0f} tokens per sample{where}"


def _deepspeed_order(inputs: Inputs) -> list[str | None]:
    """DeepSpeed configs to try, cheapest first (an explicit DEEPSPEED= is the only one tried).

    DeepSpeed on CPU (its CPU accelerator, gloo) is slow but real: it lets the ZeRO-3 launch path be tested
    without a GPU, so an explicit request is honoured; auto never picks it on CPU."""
    if inputs.deepspeed != "auto":
        return [None if inputs.deepspeed == "none" else inputs.deepspeed]
    if inputs.cpu:
        return [None]
    if inputs.world == 1:
        # LoRA included: under r1sft train (fused LoRA layers, bf16 inputs) fp32 adapters under autocast beat
        # ZeRO-2's bf16 mode on one GPU, 9,176 vs 8,857 tokens/s for Qwen2.5-7B on an H100
        # (docs/bench/h100-fused-lora/7b-linears-only.md)
        return [None] if inputs.method == "qlora" else [None, "z3_offload"]
    if inputs.method == "qlora":
        return [None, "z3"]
    if inputs.method == "full" and inputs.preset.shape.total_params >= ZERO3_FULL_FROM:
        return ["z3", "z3_offload"]
    return [None, "z2", "z3", "z3_offload"]


def _limit(inputs: Inputs) -> str:
    return f"{HEADROOM:.0%} of {inputs.gpu_mem:g} GiB" + (" of RAM" if inputs.cpu else "")


def _fit_advice(method: str, gc_override: Any, offload_override: Any = None) -> str:
    """What could make a plan fit, leaving out what the request already does."""
    options = ["more GPUs (GPUS=, NODES=)", "a shorter --cutoff"]
    lighter = {"full": "--method lora or qlora", "lora": "--method qlora", "dora": "--method lora or qlora"}
    if method in lighter:
        options.insert(1, lighter[method])
    if gc_override:  # disable_gradient_checkpointing asked for on the command line
        options.append("gradient checkpointing (drop --set disable_gradient_checkpointing)")
    if offload_override is False:  # use_unsloth_gc: false on the command line
        options.append("offloaded checkpointing (drop --set use_unsloth_gc=false)")
    return "use " + ", ".join(options[:-1]) + " or " + options[-1]


def _deepspeed_reason(inputs: Inputs, notes: Notes, chosen: Fit, tried: list[_Trial]) -> None:
    ds, est, n_params = chosen.deepspeed, chosen.memory, inputs.preset.shape.total_params
    if inputs.cpu:
        notes.reason("CPU: use_cpu, fp32 (bf16 fails without a GPU), no liger (needs CUDA)"
                     + (f", DeepSpeed {ds} on its CPU accelerator" if ds else ", no DeepSpeed"))
    elif inputs.deepspeed != "auto":
        notes.why["deepspeed"] = f"DEEPSPEED={inputs.deepspeed} on the command line"
        notes.reason(f"DeepSpeed {ds or 'none'}: asked for on the command line", "deepspeed" if ds else None)
    elif ds is None and inputs.world == 1:
        notes.reason(f"no DeepSpeed: one GPU and the model fits ({fmt_gib(est.peak)}); ZeRO-3 is ~1.8x slower on "
                     "one GPU")
    elif ds is None:
        notes.reason(f"no DeepSpeed (DDP): weights and optimizer fit each GPU unsharded ({fmt_gib(est.peak)})")
    elif inputs.method == "full" and n_params >= ZERO3_FULL_FROM and ds == "z3":
        notes.why["deepspeed"] = f"full SFT of a {n_params / 1e9:.1f}B model: shard weights, gradients and optimizer"
        notes.reason(f"ZeRO-3: full SFT of {n_params / 1e9:.1f}B parameters shards weights too, as the anchor recipes "
                     f"did ({fmt_gib(est.peak)} per GPU)", "deepspeed")
    else:
        without = min((t.memory for t in tried if t.deepspeed != ds), key=lambda e: e.peak, default=tried[0].memory)
        label = {"z2": "ZeRO-2", "z3": "ZeRO-3", "z3_offload": "ZeRO-3 with CPU offload"}[ds]
        notes.why["deepspeed"] = f"{label}: the lighter options need ~{fmt_gib(without.peak)} per GPU, over " \
                                 f"{_limit(inputs)}"
        line = f"{label}: without it ~{fmt_gib(without.peak)} per GPU (over {_limit(inputs)}); with it " \
               f"{fmt_gib(est.peak)}"
        if est.host:
            line += f"; needs ~{est.host / GIB:.0f} GiB of host RAM per node"
        notes.reason(line, None if est.host else "deepspeed")


def _checkpointing_reason(inputs: Inputs, notes: Notes, chosen: Fit, tried: list[_Trial]) -> None:
    key = "disable_gradient_checkpointing"
    if chosen.gradient_checkpointing:
        no_gc = [t.memory for t in tried if t.deepspeed == chosen.deepspeed and not t.gradient_checkpointing]
        if no_gc:
            notes.why[key] = (f"checkpointing on: without it ~{fmt_gib(min(e.peak for e in no_gc))} per "
                              f"{'process' if inputs.cpu else 'GPU'}")
        else:
            notes.why[key] = "checkpointing on: set on the command line"
        notes.reason(f"gradient checkpointing: {notes.why[key].split(': ', 1)[1]}", key)
        if chosen.offload_checkpoints:
            _offload_reason(inputs, notes, chosen, tried)
    else:
        notes.why[key] = "checkpointing off: fits without it" if inputs.gc_override is None else \
            "set on the command line"
        notes.reason(f"no gradient checkpointing: activations fit ({fmt_gib(chosen.memory.parts.get('activations', 0))})",
                     key)


def _offload_reason(inputs: Inputs, notes: Notes, chosen: Fit, tried: list[_Trial]) -> None:
    host = f"~{chosen.memory.host / GIB:.0f} GiB of pinned host RAM"
    if inputs.offload_override:
        notes.why["use_unsloth_gc"] = f"checkpoints in host RAM: set on the command line ({host})"
    else:
        on_gpu = min(t.memory.peak for t in tried if t.deepspeed == chosen.deepspeed and t.checkpointing == "on")
        notes.why["use_unsloth_gc"] = (f"checkpoints in host RAM ({host}): kept on the GPU they need "
                                       f"~{fmt_gib(on_gpu)}, over {_limit(inputs)}")
    notes.reason(f"offloaded checkpointing: {notes.why['use_unsloth_gc']}; {fmt_gib(chosen.memory.peak)} on the GPU "
                 f"(r1sft train: r1sft.patches.offloaded_checkpointing; {UNMEASURED})", "use_unsloth_gc")
    if chosen.mlp_tile_tokens:
        untiled = min(t.memory.peak for t in tried if t.checkpointing == "offloaded")
        tiles = -(-inputs.cutoff // inputs.sequence_parallel // chosen.mlp_tile_tokens)
        notes.reason(f"tiled MLP: under r1sft train the MLP runs in tiles of {chosen.mlp_tile_tokens} tokens ({tiles} "
                     f"per {inputs.cutoff}-token trace, r1sft.patches.tiled_mlp): offloaded checkpointing alone needs "
                     f"~{fmt_gib(untiled)} per GPU, over {_limit(inputs)}; costs one more MLP forward per layer "
                     f"({UNMEASURED})")


def _liger_reason(inputs: Inputs, notes: Notes, chosen: Fit) -> None:
    if inputs.cpu:
        notes.why["enable_liger_kernel"] = "liger's kernels need a CUDA GPU"
    elif not chosen.liger:
        notes.why["enable_liger_kernel"] = "set on the command line"
    else:
        with_logits = _estimate(inputs.preset, {**chosen.memory_args, "liger": False}, chosen.deepspeed,
                                chosen.checkpointing, chosen.per_device, chosen.grad_accum)
        saved = with_logits.parts.get("logits", 0) - chosen.memory.parts.get("logits", 0)
        notes.why["enable_liger_kernel"] = f"fused kernels; fused cross-entropy never holds the logits (-{fmt_gib(saved)})"
        notes.reason(f"liger kernel: {notes.why['enable_liger_kernel']}", "enable_liger_kernel")


def _batch_reason(inputs: Inputs, notes: Notes, chosen: Fit) -> None:
    pdb, ga, cutoff, gpus = chosen.per_device, chosen.grad_accum, inputs.cutoff, inputs.gpus
    pdb_why = f"{pdb} x {cutoff} = {pdb * cutoff} tokens per micro-batch"
    if inputs.sequence_parallel > 1:
        split = inputs.sequence_parallel
        pdb_why = f"{pdb} x {cutoff} tokens per micro-batch, {-(-pdb * cutoff // split)} on each of {split} ranks"
    if inputs.fixed_per_device is not None or inputs.fixed_grad_accum is not None:
        pdb_why += " (set on the command line)"
    per = f"{pdb} per device x GA {ga} x {max(1, gpus)} {'GPUs' if gpus > 1 else 'GPU' if gpus == 1 else 'process'}"
    if inputs.nodes > 1:
        per += f" x {inputs.nodes} nodes"
    if inputs.sequence_parallel > 1:
        split, groups = inputs.sequence_parallel, inputs.data_parallel
        per = (f"{pdb} per device x GA {ga} x {groups} data-parallel rank{'s' if groups > 1 else ''} "
               f"({inputs.world} {'processes' if inputs.cpu else 'GPUs'} / {split} per trace; GA counts the "
               f"{split} shards of each batch)")
    spp = chosen.samples_per_pack
    if spp is None:
        notes.why["per_device_train_batch_size"] = pdb_why
        notes.why["gradient_accumulation_steps"] = f"{per} = {inputs.global_batch} (global batch)"
        notes.reason(f"batch: {per} = {inputs.global_batch}; {pdb_why}", "gradient_accumulation_steps")
        return
    packs = pdb * ga * inputs.data_parallel
    plural = "s" if packs > 1 else ""
    notes.why["per_device_train_batch_size"] = f"1 pack of up to {cutoff} tokens holding ~{spp:.1f} samples"
    notes.why["gradient_accumulation_steps"] = (f"{per} = {packs} pack{plural} = ~{packs * spp:.0f} samples "
                                                f"(global batch {inputs.global_batch})")
    notes.why["packing"] = f"~{spp:.1f} samples per {cutoff}-token pack ({chosen.packing_source})"
    notes.why["neat_packing"] = "packed samples never attend to each other (r1sft train: varlen attention, no dense mask)"
    notes.reason(f"batch: {per} = {packs} pack{plural} of ~{spp:.1f} samples = ~{packs * spp:.0f} per step, for a "
                 f"global batch of {inputs.global_batch}", "gradient_accumulation_steps")
    measured = chosen.packing_source.startswith("measured")
    notes.reason(f"neat packing: {chosen.packing_source}"
                 + (" (dataset_info.json r1sft.mean_tokens)" if measured else ": convert with --tokenizer to measure it")
                 + f"; each micro-batch is one {cutoff}-token pack, its samples kept apart by varlen attention",
                 "packing")


def uncheckpointed_layers(config: dict, preset: Preset, gpu_mem: float, world: int, fused: bool | None = None,
                          sequence_parallel: int = 1) -> int:
    """How many of the last decoder layers ``r1sft train`` can run without gradient checkpointing for ``config``
    (a LLaMA-Factory training config) within the memory budget: 0 where checkpointing is off, on CPU, or nothing
    more fits. The planner writes it in the recipe's header; the launcher recomputes it for the config it launches
    (edits and overrides included) and hands it to r1sft.patches.partial_checkpointing. ``fused``: whether the run
    gets r1sft.patches.fused_lora (None: its default for ``config``); ``sequence_parallel``: ranks per trace."""
    if (config.get("disable_gradient_checkpointing") or config.get("use_cpu") or preset.tiny
            or config.get("use_unsloth_gc")):  # offloaded: planned where memory is short; no layer kept whole
        return 0
    method = config.get("finetuning_type", "lora")
    if (method not in ("lora", "full") or config.get("quantization_bit") or config.get("use_dora")
            or config.get("pure_bf16") or (method == "full" and config.get("deepspeed"))):
        # measured for LoRA (docs/bench/h100-partial-checkpointing/) and full SFT without DeepSpeed
        # (docs/bench/h200-2026-12-04/); the other methods' counts carry more margin
        return 0
    budget = gpu_mem * GIB * HEADROOM
    args = {**_config_memory_args(config, world, fused), "sequence_parallel": sequence_parallel}
    kept = 0
    while kept < preset.shape.layers - 1 and estimate_memory(
            preset.shape, **args, uncheckpointed_layers=kept + 1).peak <= budget:
        kept += 1
    return kept


def _config_memory_args(config: dict, world: int, fused: bool | None) -> dict[str, Any]:
    """estimate_memory's arguments for a LoRA or full run of the LLaMA-Factory training ``config``."""
    stage, offload = ZERO[deepspeed_from_path(str(config["deepspeed"]))] if config.get("deepspeed") else (None, False)
    return dict(
        method=config.get("finetuning_type", "lora"), seq_len=int(config.get("cutoff_len", 2048)),
        grad_accum=int(config.get("gradient_accumulation_steps", 1)),
        micro_batch=int(config.get("per_device_train_batch_size", 8)), world_size=max(1, world),
        zero_stage=stage, offload=offload, gradient_checkpointing=True,
        liger=bool(config.get("enable_liger_kernel")), lora_rank=int(config.get("lora_rank", 8)),
        lora_dropout=float(config.get("lora_dropout", 0.0)),
        # new tokens (or asked for) make embed_tokens and lm_head trainable copies: ~20 GiB more for a 7B model
        resize_vocab=any(config.get(key) for key in ("add_special_tokens", "add_tokens", "resize_vocab",
                                                      "additional_target")),
        fused_lora=fused_lora.applies_to(config, {}) if fused is None else fused,
        offload_checkpoints=bool(config.get("use_unsloth_gc")),
    )


def partial_checkpointing(inputs: Inputs, notes: Notes, chosen: Fit, train: dict) -> int:
    """Layers ``r1sft train`` runs without checkpointing for the recipe ``train``, with the reason; ``chosen.memory``
    becomes the estimate with them."""
    if not chosen.gradient_checkpointing:
        return 0
    fused = fused_lora.applies_to(train, {})  # r1sft train's default for this recipe
    kept = uncheckpointed_layers(train, inputs.preset, inputs.gpu_mem, inputs.world, fused=fused,
                                 sequence_parallel=inputs.sequence_parallel)
    if not kept:
        return 0
    stage, offload = ZERO[chosen.deepspeed] if chosen.deepspeed else (None, False)
    chosen.memory = est = estimate_memory(inputs.preset.shape, zero_stage=stage, offload=offload, gradient_checkpointing=True,
                          micro_batch=chosen.per_device, grad_accum=chosen.grad_accum, uncheckpointed_layers=kept,
                          fused_lora=fused, offload_checkpoints=chosen.offload_checkpoints,
                          **{**chosen.memory_args, "seq_len": int(train["cutoff_len"])})
    layers = inputs.preset.shape.layers
    notes.why["disable_gradient_checkpointing"] += f"; r1sft train leaves the last {kept} of {layers} layers uncheckpointed"
    with_fused = " with r1sft.patches.fused_lora's LoRA layers" if fused else ""
    notes.reason(f"partial checkpointing: under r1sft train the last {kept} of {layers} layers keep their activations "
                 f"and skip recomputation ({fmt_gib(est.peak)} per GPU{with_fused}; R1SFT_UNCHECKPOINTED_LAYERS=0 "
                 "checkpoints all)", "disable_gradient_checkpointing")
    return kept
