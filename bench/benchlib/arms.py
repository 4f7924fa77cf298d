"""The configurations the benchmark trains: (a) LLaMA-Factory's example style, (b) the recipe r1sft plans.

(a) follows LLaMA-Factory's ``examples/train_full/llama3_full_sft.yaml`` (ZeRO-3 from
``examples/deepspeed/ds_z3_config.json``, gradient checkpointing on by default, no liger, batch 1 x GA 2) and
``examples/train_lora/llama3_lora_sft.yaml`` (LoRA rank 8 on all linears, batch 1 x GA 8), at the case's cutoff;
``overwrite_output_dir`` (gone from transformers 5) is the only key dropped.
(b) is ``r1sft.recipe.plan_recipe`` for the same model folder, data, GPU and samples per optimizer step.

Both arms get the same bench-only keys (data, output folder, max_steps, no checkpoints, seed), so they train the
same data with the same number of samples per optimizer step; only the planner's choices differ.
Extra arms (``VARIANTS``) measure one lever at a time for the exploration run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# LLaMA-Factory's examples/deepspeed/ds_z3_config.json (v0.9.5), written next to the bench's work files.
DS_Z3 = {
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "zero_allow_untested_optimizer": True,
    "fp16": {"enabled": "auto", "loss_scale": 0, "loss_scale_window": 1000, "initial_scale_power": 16,
             "hysteresis": 2, "min_loss_scale": 1},
    "bf16": {"enabled": "auto"},
    "zero_optimization": {
        "stage": 3, "overlap_comm": False, "contiguous_gradients": True, "sub_group_size": 1e9,
        "reduce_bucket_size": "auto", "stage3_prefetch_bucket_size": "auto",
        "stage3_param_persistence_threshold": "auto", "stage3_max_live_parameters": 1e9,
        "stage3_max_reuse_distance": 1e9, "stage3_gather_16bit_weights_on_model_save": True,
    },
}
EXPANDABLE = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
# PyTorch prefers cuDNN attention on Hopper; TORCH_CUDNN_SDPA_PREFERRED=0 moves SDPA off it. Measured on the H100
# on 2026-11-22 (output not kept; docs/performance.md's first entry): 3x slower steps without checkpointing, so
# r1sft leaves it alone. Kept to re-measure.
FAST_ENV = {**EXPANDABLE, "TORCH_CUDNN_SDPA_PREFERRED": "0"}
VARLEN_ENV = {**EXPANDABLE, "R1SFT_PACKED_ATTENTION": "varlen"}  # what r1sft.train adds for neat_packing recipes


@dataclass
class Context:
    """Where things are and what machine this is."""

    case: Any  # cases.Case
    model_dir: Path
    dataset: str
    data_dir: Path
    work: Path
    gpu_mem_gib: float | None  # None: CPU
    smoke: bool = False
    preprocessing_workers: int = 8
    memory_cap_gib: float | None = None  # the allocator of every arm capped here (a smaller GPU emulated)
    peer_python: str | None = None  # the peer arms' interpreter and PYTHONPATH (benchlib/peers.py)
    peer_pythonpath: str = ""

    @property
    def cpu(self) -> bool:
        return self.gpu_mem_gib is None


@dataclass
class Arm:
    name: str
    config: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""
    plan_summary: str = ""
    memory_estimate: Any = None  # r1sft.recipe.MemoryEstimate of this configuration
    packed: bool = False
    peer: bool = False  # a TRL arm (benchlib/peers.py): trl_run.py in the peer environment runs its config

    @property
    def torchrun(self) -> bool:
        return bool(self.config.get("deepspeed"))


def _device_keys(ctx: Context) -> dict[str, Any]:
    return {"use_cpu": True} if ctx.cpu else {"bf16": True}


def baseline(ctx: Context) -> Arm:
    case = ctx.case
    config: dict[str, Any] = {"model_name_or_path": str(ctx.model_dir), "trust_remote_code": False,
                              "stage": "sft", "do_train": True}
    if case.method == "full":
        config["finetuning_type"] = "full"
        ds_path = ctx.work / "ds_z3_config.json"
        ds_path.parent.mkdir(parents=True, exist_ok=True)
        ds_path.write_text(json.dumps(DS_Z3, indent=2))
        config["deepspeed"] = str(ds_path)
        per_device, accum, rate = 1, 2, 1.0e-5
    else:
        config.update(finetuning_type="lora", lora_rank=8, lora_target="all")
        per_device, accum, rate = 1, 8, 1.0e-4
    config.update({
        "dataset": ctx.dataset, "template": case.template, "cutoff_len": case.cutoff, "max_samples": 1000,
        "overwrite_cache": True, "preprocessing_num_workers": ctx.preprocessing_workers,
        "dataloader_num_workers": 0 if ctx.cpu else 4,
        "logging_steps": 10, "save_steps": 500, "plot_loss": True, "save_only_model": False, "report_to": "none",
        "per_device_train_batch_size": per_device, "gradient_accumulation_steps": accum, "learning_rate": rate,
        "num_train_epochs": 3.0, "lr_scheduler_type": "cosine", "warmup_ratio": 0.1, **_device_keys(ctx),
        "ddp_timeout": 180000000, "resume_from_checkpoint": None, "flash_attn": "sdpa",
    })
    if case.template == "qwen3":
        config["enable_thinking"] = True
    config.update(dict(case.sets))
    note = ("LLaMA-Factory example style: " + ("full SFT, ZeRO-3" if case.method == "full" else "LoRA rank 8")
            + ", gradient checkpointing, no liger, batch 1")
    return Arm("baseline", config, note=note, memory_estimate=memory_estimate_for(ctx, config))


def launcher_env() -> dict[str, str]:
    """Environment r1sft's launcher adds for speed (``r1sft.train.launch.PERFORMANCE_ENV``), when it defines one."""
    try:
        from r1sft.train import launch
    except ImportError:
        return {}
    return dict(getattr(launch, "PERFORMANCE_ENV", None) or {})


def planned(ctx: Context, name: str = "planned", env: dict | None = None, note: str = "", deepspeed: str = "auto",
            packing: bool = False, **overrides) -> Arm:
    """The recipe ``r1sft recipe`` writes for this case (``overrides``: its --set values), run the way run_sft.sh
    runs it (with the launcher's environment, unless ``env`` is given)."""
    from r1sft.recipe import RecipeRequest, plan_recipe

    case = ctx.case
    split = case.sequence_parallel
    overrides = {**dict(case.sets), **overrides}
    request = RecipeRequest(model=case.preset, method=case.method, datasets=[ctx.dataset],
                            gpus=0 if ctx.cpu else getattr(case, "gpus", 1), gpu_mem=ctx.gpu_mem_gib, cutoff=case.cutoff,
                            global_batch=case.samples_per_step, model_path=str(ctx.model_dir),
                            deepspeed=deepspeed, packing=packing, sequence_parallel=split if split > 1 else None,
                            overrides=dict(overrides))
    plan = plan_recipe(request, data_dir=ctx.data_dir, build_tiny=False)
    config = dict(plan.train)
    config["model_name_or_path"] = str(ctx.model_dir)
    env = launcher_env() if env is None else env
    if ctx.cpu:
        env = {}
    sets = " ".join(f"{k}={v}" for k, v in overrides.items())
    if not ctx.cpu:  # the hooks r1sft's launcher turns on for this config (lf_run.py installs them)
        from r1sft.patches import fused_lora
        from r1sft.recipe.fit import uncheckpointed_layers
        from r1sft.train.switches import patch_switches

        # the launcher's count for this environment (with R1SFT_FUSED_LORA=off a LoRA layer keeps more)
        layers = uncheckpointed_layers(config, plan.preset, plan.gpu_mem, plan.world,
                                       fused=fused_lora.applies_to(config, env), sequence_parallel=plan.sequence_parallel)
        env = {**env, **patch_switches(config, env, layers, sequence_parallel=plan.sequence_parallel,
                                       mlp_tile_tokens=plan.mlp_tile_tokens)}
    arm = Arm(name, config, env=env, note=note or ("r1sft plan_recipe: " + plan.make_command),
              plan_summary=plan.summary(), memory_estimate=plan.memory, packed=packing)
    if overrides:
        arm.note = (note + "; " if note else "") + f"r1sft recipe ... --set {sets}"
    if overrides or env.get("R1SFT_UNCHECKPOINTED_LAYERS", "0") != str(plan.uncheckpointed_layers):
        arm.memory_estimate = memory_estimate_for(ctx, config, env) or plan.memory
    return arm


def bench_keys(arm: Arm, ctx: Context, max_steps: int, tokenized: Path) -> None:
    """What both arms share so that they are comparable: data, outputs, steps, no checkpoints, same seed (the peer
    arms' twin: ``peers.bench_keys``)."""
    c = arm.config
    c["dataset"] = ctx.dataset
    c["dataset_dir"] = str(ctx.data_dir)
    c["output_dir"] = str(ctx.work / "runs" / ctx.case.name / arm.name)
    c.pop("overwrite_output_dir", None)
    c["max_steps"] = max_steps
    c["save_strategy"] = "no"
    c.pop("save_steps", None)
    c.pop("save_total_limit", None)
    c["report_to"] = "none"
    c["plot_loss"] = False
    c["seed"] = 42
    # File order, not a shuffle: both arms see the same documents in the same steps, and the data generator puts
    # the longest document inside the measured window, so the peak memory is the worst case.
    c["disable_shuffling"] = True
    c["max_samples"] = 100000
    c["tokenized_path"] = str(tokenized)
    c["preprocessing_num_workers"] = ctx.preprocessing_workers
    if ctx.cpu:
        c.pop("bf16", None)
        c["use_cpu"] = True
        c["dataloader_num_workers"] = 0
        c["dataloader_pin_memory"] = False


def memory_estimate_for(ctx: Context, config: dict, env: dict | None = None) -> Any:
    """The planner's memory model for an arbitrary config run with the hooks ``env`` switches on (None: none; None
    returned when r1sft.recipe is missing or it is the CPU)."""
    if ctx.cpu:
        return None
    try:
        from r1sft.patches import fused_lora
        from r1sft.presets import family_for_model, read_config, shape_from_config
        from r1sft.recipe import estimate_memory
    except ImportError:
        return None
    family = family_for_model(str(ctx.model_dir))
    shape = shape_from_config(read_config(ctx.model_dir), family)
    ds = config.get("deepspeed")
    name = Path(str(ds)).name if ds else ""
    zero = 3 if "z3" in name else (0 if "z0" in name else (2 if ds else None))
    method = "full" if config.get("finetuning_type") == "full" else "lora"
    return estimate_memory(
        shape, method=method, seq_len=int(config["cutoff_len"]),
        micro_batch=int(config.get("per_device_train_batch_size", 1)), zero_stage=zero,
        grad_accum=int(config.get("gradient_accumulation_steps", 1)),
        gradient_checkpointing=not config.get("disable_gradient_checkpointing", False),
        offload_checkpoints=bool(config.get("use_unsloth_gc")),
        mlp_tile_tokens=int((env or {}).get("R1SFT_TILED_MLP", 0) or 0),
        liger=bool(config.get("enable_liger_kernel", False)), lora_rank=int(config.get("lora_rank", 8)),
        lora_dropout=float(config.get("lora_dropout", 0.0)),
        uncheckpointed_layers=int((env or {}).get("R1SFT_UNCHECKPOINTED_LAYERS", 0) or 0),
        fused_lora=fused_lora.enabled_by_env(env or {}), world_size=getattr(ctx.case, "gpus", 1),
        sequence_parallel=int((env or {}).get("R1SFT_SEQUENCE_PARALLEL", 1) or 1))


# ------------------------------------------------------------------------------------ exploration variants
def _lean(ctx: Context, **extra) -> Arm:
    """Baseline minus DeepSpeed, plus liger: the starting point for one-lever-at-a-time variants."""
    arm = baseline(ctx)
    c = arm.config
    c.pop("deepspeed", None)
    c["enable_liger_kernel"] = True
    c.update(extra)
    return arm


def _variant(name: str, ctx: Context, note: str, env: dict | None = None, packed: bool = False, **extra) -> Arm:
    arm = _lean(ctx, **extra)
    arm.name, arm.note, arm.env, arm.packed = name, note, dict(env or {}), packed
    arm.memory_estimate = memory_estimate_for(ctx, arm.config)
    return arm


def tuned(ctx: Context) -> Arm:
    """The planner's recipe with the knobs the first H100 measurements said it should choose
    (docs/bench/h100-explore-1.5b.md, docs/bench/h100-planned-tuned-1.5b.md):
    full SFT without gradient checkpointing when it fits, LoRA without dropout; run with expandable segments."""
    sets = {"disable_gradient_checkpointing": True} if ctx.case.method == "full" else {"lora_dropout": 0.0}
    # DEEPSPEED=none: the planner's memory model (79 GiB estimated, ~60-66 GiB measured without checkpointing)
    # would otherwise fall back to ZeRO-3 offload.
    return planned(ctx, "planned_tuned", {} if ctx.cpu else EXPANDABLE,
                   "planner + measured knobs, PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True", deepspeed="none",
                   **sets)


VARIANTS = {
    "planned_tuned": tuned,
    "nods_gc_noliger": lambda ctx: _nods_noliger(ctx),
    "nods_liger_gc": lambda ctx: _variant("nods_liger_gc", ctx, "no DeepSpeed, liger, checkpointing on"),
    "nods_liger_nogc": lambda ctx: _variant("nods_liger_nogc", ctx, "no DeepSpeed, liger, no checkpointing",
                                            disable_gradient_checkpointing=True),
    "nogc_expandable": lambda ctx: _variant("nogc_expandable", ctx, "+ expandable_segments allocator",
                                            env=EXPANDABLE, disable_gradient_checkpointing=True),
    "nogc_pure_bf16": lambda ctx: _variant("nogc_pure_bf16", ctx, "+ pure_bf16 (bf16 weights and AdamW states)",
                                           env=EXPANDABLE, disable_gradient_checkpointing=True, pure_bf16=True),
    "nogc_bs2_grouped": lambda ctx: _variant(
        "nogc_bs2_grouped", ctx, "+ batch 2 x GA/2, length-grouped sampler", env=EXPANDABLE,
        disable_gradient_checkpointing=True, per_device_train_batch_size=2,
        gradient_accumulation_steps=max(1, ctx.case.samples_per_step // 2),
        train_sampling_strategy="group_by_length"),
    "nogc_neat_packing": lambda ctx: _variant(
        "nogc_neat_packing", ctx, "+ neat_packing (4D block mask, sdpa); packs, not samples, per step",
        env=EXPANDABLE, packed=True, disable_gradient_checkpointing=True, packing=True, neat_packing=True),
    "nogc_bf16_kahan": lambda ctx: _variant(
        "nogc_bf16_kahan", ctx, "+ pure_bf16 with Kahan-summed StableAdamW (torch-optimi)", env=EXPANDABLE,
        disable_gradient_checkpointing=True, pure_bf16=True, optim="stable_adamw"),
    "nogc_neat_varlen": lambda ctx: _variant(
        "nogc_neat_varlen", ctx, "+ neat_packing through r1sft.patches.packed_attention (varlen)",
        env=VARLEN_ENV, packed=True, disable_gradient_checkpointing=True, packing=True, neat_packing=True),
    "nogc_neat_varlen_kahan": lambda ctx: _variant(
        "nogc_neat_varlen_kahan", ctx, "+ neat_packing (varlen) + pure_bf16 + Kahan StableAdamW",
        env=VARLEN_ENV, packed=True, disable_gradient_checkpointing=True, packing=True, neat_packing=True,
        pure_bf16=True, optim="stable_adamw"),
    "gc_neat_varlen": lambda ctx: _variant(
        "gc_neat_varlen", ctx, "checkpointing + neat_packing through r1sft.patches.packed_attention (varlen)",
        env=VARLEN_ENV, packed=True, packing=True, neat_packing=True),
    "nogc_compile": lambda ctx: _variant(
        "nogc_compile", ctx, "+ torch_compile (regional, dynamic shapes)",
        env={**EXPANDABLE, "ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION": "1", "ACCELERATE_DYNAMO_USE_DYNAMIC": "1"},
        disable_gradient_checkpointing=True, torch_compile=True),
    "nogc_workers0": lambda ctx: _variant("nogc_workers0", ctx, "+ expandable, dataloader_num_workers 0",
                                          env=EXPANDABLE, disable_gradient_checkpointing=True,
                                          dataloader_num_workers=0),
    "gc_expandable": lambda ctx: _variant("gc_expandable", ctx, "no DeepSpeed, liger, checkpointing, expandable",
                                          env=EXPANDABLE),
    "gc_bs2_grouped": lambda ctx: _variant(
        "gc_bs2_grouped", ctx, "checkpointing, batch 2 x GA/2, length-grouped", env=EXPANDABLE,
        per_device_train_batch_size=2, gradient_accumulation_steps=max(1, ctx.case.samples_per_step // 2),
        train_sampling_strategy="group_by_length"),
    "gc_lora_nodropout": lambda ctx: _variant("gc_lora_nodropout", ctx, "planned LoRA shape (rank 64) without dropout",
                                              env=EXPANDABLE, lora_rank=64, lora_alpha=128, lora_dropout=0.0),
    # the planner's recipe with one or two knobs changed, run with FAST_ENV
    "flash_gc_liger": lambda ctx: planned(ctx, "flash_gc_liger", FAST_ENV, "planned + flash SDPA + expandable"),
    "flash_nogc_liger": lambda ctx: planned(ctx, "flash_nogc_liger", FAST_ENV, "planned, no checkpointing, + env",
                                            disable_gradient_checkpointing=True),
    "flash_gc_noliger": lambda ctx: planned(ctx, "flash_gc_noliger", FAST_ENV, "planned, no liger, + env",
                                            enable_liger_kernel=False),
    "flash_gc_liger_nodrop": lambda ctx: planned(ctx, "flash_gc_liger_nodrop", FAST_ENV,
                                                 "planned, lora_dropout 0, + env", lora_dropout=0.0),
    "flash_gc_noliger_nodrop": lambda ctx: planned(ctx, "flash_gc_noliger_nodrop", FAST_ENV,
                                                   "planned, no liger, lora_dropout 0, + env",
                                                   enable_liger_kernel=False, lora_dropout=0.0),
}


VARIANTS.update({
    # r1sft recipe --packing: the planner sizes packs per step from the data's mean length
    "planned_packing": lambda ctx: planned(ctx, "planned_packing", packing=True),
    "planned_packing_gc": lambda ctx: planned(ctx, "planned_packing_gc", packing=True,
                                              disable_gradient_checkpointing=False),
    "planned_packing_nodrop": lambda ctx: planned(ctx, "planned_packing_nodrop", packing=True, lora_dropout=0.0),
    "planned_packing_dropout": lambda ctx: planned(ctx, "planned_packing_dropout", packing=True, lora_dropout=0.05),
    "planned_packing_kahan": lambda ctx: planned(ctx, "planned_packing_kahan", packing=True, pure_bf16=True,
                                                 optim="stable_adamw"),
    "planned_kahan": lambda ctx: planned(ctx, "planned_kahan", None, "planned + pure_bf16 + Kahan StableAdamW",
                                         pure_bf16=True, optim="stable_adamw"),
    # an MFU lever not yet measured on a GPU (docs/performance.md, "One-GPU runs left to do")
    "planned_packing_compile": lambda ctx: planned(
        ctx, "planned_packing_compile",
        {**launcher_env(), "ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION": "1", "ACCELERATE_DYNAMO_USE_DYNAMIC": "1"},
        "planned --packing + torch_compile (regional, dynamic shapes)", packing=True, torch_compile=True),
})


def _bf16_master(ctx: Context, name: str, packing: bool, stage: str = "z0", **extra) -> Arm:
    """DeepSpeed's bf16 mode on one GPU: bf16 weights and activations, fp32 master weights in the optimizer (no
    autocast, so no per-step casts of fp32 weights). Full SFT keeps checkpointing off as the plain plan does.
    ZeRO-2 (ds_configs/z2.json, fp32 gradient accumulation) was the planner's one-GPU LoRA plan from 2026-11-22
    (docs/bench/h100-bf16-lora/7b-lora/bench.md) until fp32 adapters under autocast beat it with the fused LoRA
    layers (docs/bench/h100-fused-lora/7b-linears-only.md); the LoRA cases' ``_z2`` arms re-measure it."""
    if ctx.case.method == "full":
        extra.setdefault("disable_gradient_checkpointing", True)
    return planned(ctx, name, packing=packing, deepspeed=stage, **extra)


VARIANTS.update({
    "planned_z0": lambda ctx: _bf16_master(ctx, "planned_z0", packing=False),
    "planned_packing_z0": lambda ctx: _bf16_master(ctx, "planned_packing_z0", packing=True),
    "planned_packing_z2": lambda ctx: _bf16_master(ctx, "planned_packing_z2", packing=True, stage="z2"),
    "planned_packing_w8": lambda ctx: planned(ctx, "planned_packing_w8", packing=True, dataloader_num_workers=8),
    # optim adamw_torch_fused is transformers 5's default with torch >= 2.8: these arms name it, the plans inherit it
    "planned_fused": lambda ctx: planned(ctx, "planned_fused", optim="adamw_torch_fused"),
    "planned_packing_fused": lambda ctx: planned(ctx, "planned_packing_fused", packing=True, optim="adamw_torch_fused"),
    "planned_z2_fused": lambda ctx: _bf16_master(ctx, "planned_z2_fused", packing=False, stage="z2",
                                                 optim="adamw_torch_fused"),
    "planned_packing_z2_fused": lambda ctx: _bf16_master(ctx, "planned_packing_z2_fused", packing=True, stage="z2",
                                                         optim="adamw_torch_fused"),
})

# liger's own cross-entropy chunking (64 chunks at 16k tokens for Qwen2.5-1.5B), as before r1sft.patches.liger_chunking.
LIGER_DEFAULT_CHUNKS = {"R1SFT_LIGER_CHUNKING": "off"}
VARIANTS.update({
    "planned_liger_default": lambda ctx: planned(ctx, "planned_liger_default", {**launcher_env(), **LIGER_DEFAULT_CHUNKS},
                                                 "planned, liger's default cross-entropy chunks"),
    # accelerate's non-blocking host-to-device copies of the (pinned) batch: no host sync per input tensor
    "planned_packing_nonblocking": lambda ctx: planned(ctx, "planned_packing_nonblocking", packing=True,
                                                       accelerator_config={"non_blocking": True}),
    "planned_packing_liger_default": lambda ctx: planned(
        ctx, "planned_packing_liger_default", {**launcher_env(), **LIGER_DEFAULT_CHUNKS},
        "planned + packing, liger's default cross-entropy chunks", packing=True),
})


# LoRA without DeepSpeed: fp32 adapters under autocast, as r1sft's DDP recipes for several GPUs train them;
# r1sft.patches.lora_input_cast on (the launcher's default there) or off (PEFT's fp32 copy of every adapted layer's input).
PEFT_INPUT_CAST = {"R1SFT_LORA_INPUT_CAST": "off"}


def _keep_layers(ctx: Context, name: str, layers: int) -> Arm:
    """The packed plan with r1sft.patches.partial_checkpointing: the last ``layers`` layers not checkpointed (0: all)."""
    what = f"the last {layers} layers without" if layers else "every layer with"
    return planned(ctx, name, {**launcher_env(), "R1SFT_UNCHECKPOINTED_LAYERS": str(layers)},
                   f"planned + packing, {what} gradient checkpointing", packing=True)


VARIANTS.update({
    "planned_packing_autocast": lambda ctx: planned(
        ctx, "planned_packing_autocast", None, "planned + packing, no DeepSpeed: fp32 adapters under autocast",
        packing=True, deepspeed="none"),
    "planned_packing_autocast_peft_cast": lambda ctx: planned(
        ctx, "planned_packing_autocast_peft_cast", {**launcher_env(), **PEFT_INPUT_CAST},
        "planned + packing, no DeepSpeed, PEFT's fp32 input copies", packing=True, deepspeed="none"),
    "planned_packing_gc_all": lambda ctx: _keep_layers(ctx, "planned_packing_gc_all", 0),
    "planned_gc_all": lambda ctx: planned(ctx, "planned_gc_all", {**launcher_env(), "R1SFT_UNCHECKPOINTED_LAYERS": "0"},
                                          "planned, every layer checkpointed"),
    "planned_packing_keep4": lambda ctx: _keep_layers(ctx, "planned_packing_keep4", 4),
    "planned_packing_keep8": lambda ctx: _keep_layers(ctx, "planned_packing_keep8", 8),
    "planned_packing_keep12": lambda ctx: _keep_layers(ctx, "planned_packing_keep12", 12),
})

# PEFT's own LoRA layer instead of r1sft.patches.fused_lora (and the fewer uncheckpointed layers its memory allows).
PEFT_LORA = {"R1SFT_FUSED_LORA": "off"}
VARIANTS.update({
    "planned_peft_lora": lambda ctx: planned(ctx, "planned_peft_lora", {**launcher_env(), **PEFT_LORA},
                                             "planned, PEFT's LoRA layer (R1SFT_FUSED_LORA=off)"),
    "planned_packing_peft_lora": lambda ctx: planned(
        ctx, "planned_packing_peft_lora", {**launcher_env(), **PEFT_LORA},
        "planned + packing, PEFT's LoRA layer (R1SFT_FUSED_LORA=off)", packing=True),
    "planned_packing_autocast_peft_lora": lambda ctx: planned(
        ctx, "planned_packing_autocast_peft_lora", {**launcher_env(), **PEFT_LORA},
        "planned + packing, no DeepSpeed, PEFT's LoRA layer", packing=True, deepspeed="none"),
})


def _nods_noliger(ctx: Context) -> Arm:
    arm = _variant("nods_gc_noliger", ctx, "no DeepSpeed, no liger, checkpointing on", enable_liger_kernel=False)
    return arm


def build(name: str, ctx: Context) -> Arm:
    if name == "baseline":
        return baseline(ctx)
    if name == "planned":
        return planned(ctx)
    if name in VARIANTS:
        return VARIANTS[name](ctx)
    raise SystemExit(f"unknown arm {name!r}: baseline, planned, {', '.join(VARIANTS)}")
