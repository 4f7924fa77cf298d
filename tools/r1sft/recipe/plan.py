"""Decisions: from a request (model, method, hardware, data) to every value of the training and merge recipes.

Each choice comes with a one-line reason; the numbers behind hardware choices come from :mod:`.memory`. Rendering
(:mod:`.render`) only lays the values out.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1sft import fused_lora, paths
from r1sft.errors import R1sftError
from r1sft.presets import ADAPTER_METHODS, METHODS, Preset, catalogue, get_preset, with_local_shape
from r1sft.recipe.data import SAMPLE_DATASET, datasets_special_tokens
from r1sft.recipe.memory import GIB, MemoryEstimate, estimate_memory

DEEPSPEED_CHOICES = ("auto", "none", "z0", "z2", "z3", "z3_offload")
# name -> (ZeRO stage, offload)
ZERO = {"z0": (0, False), "z2": (2, False), "z3": (3, False), "z3_offload": (3, True)}
# Fraction of GPU memory a plan may fill: the rest absorbs fragmentation spikes the estimate does not see.
HEADROOM = 0.9
# Tokens one micro-batch may hold: beyond this a larger per-device batch mostly adds padding and activations.
MICROBATCH_TOKENS = {"gpu": 16384, "cpu": 2048}
# Full SFT at or above this size uses ZeRO-3, as the anchor recipes did (Sky-T1, OpenThinker).
ZERO3_FULL_FROM = 7e9
METHOD_NAMES = {"lora": "LoRA", "qlora": "QLoRA", "dora": "DoRA", "full": "full"}
# --set keys the planner treats as inputs rather than as plain values.
PLANNED_SET_KEYS = ("per_device_train_batch_size", "gradient_accumulation_steps", "disable_gradient_checkpointing",
                    "enable_liger_kernel")
# Samples per pack when the data's mean length is unknown (converted without --tokenizer): R1-style traces
# average ~4k tokens (Bespoke-Stratos, OpenThoughts); the bench's synthetic data is log-normal around that.
ASSUMED_MEAN_TOKENS = 4000
# LLaMA-Factory's greedy knapsack fills packs to ~97% of cutoff_len on R1-length data (bench: 5.7 documents of
# mean 2.8k in 16k packs); the estimate of samples per pack uses it.
PACK_FILL = 0.97


@dataclass
class RecipeRequest:
    """What the user asked for; None means "the catalogue default for this preset"."""

    model: str
    method: str = "lora"
    datasets: list[str] | None = None
    gpus: int | None = None
    nodes: int | None = None
    gpu_mem: float | None = None
    cutoff: int | None = None
    global_batch: int | None = None
    deepspeed: str = "auto"
    think: str | None = None  # "on" / "off" (Qwen3 only)
    template: str | None = None
    model_path: str | None = None
    packing: bool = False  # neat packing: several samples per cutoff-long row, kept apart by the attention mask
    overrides: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None


@dataclass
class Plan:
    """Everything a recipe says, decided: values in order, and why."""

    request: RecipeRequest
    preset: Preset
    method: str
    model_path: str
    template: str
    datasets: list[str]
    special_tokens: list[str]
    cpu: bool
    gpus: int
    nodes: int
    gpu_mem: float
    cutoff: int
    global_batch: int
    per_device: int
    grad_accum: int
    deepspeed: str | None
    gradient_checkpointing: bool
    liger: bool
    memory: MemoryEstimate
    samples_per_pack: float | None  # None: not packed
    uncheckpointed_layers: int  # of the last layers, run without checkpointing under `r1sft train`
    train: dict[str, Any]
    extra_keys: list[str]  # --set keys the templates do not place: rendered at the end of their section
    merge: dict[str, Any] | None
    why: dict[str, str]
    reasons: list[str]
    warnings: list[str]
    command: str
    make_command: str
    sft_path: Path
    merge_path: Path | None

    @property
    def world(self) -> int:
        return max(1, self.gpus) * self.nodes

    @property
    def is_adapter(self) -> bool:
        return self.method in ADAPTER_METHODS

    @property
    def hardware(self) -> str:
        if self.cpu:
            return "CPU"
        node = f" x {self.nodes} nodes" if self.nodes > 1 else ""
        return f"{self.gpus} GPU{'s' if self.gpus > 1 else ''}{node} ({self.gpu_mem:g} GiB each)"

    @property
    def memory_line(self) -> str:
        where = "process (CPU)" if self.cpu else "GPU"
        line = f"~{self.memory.peak_gib:.1f} GiB per {where} at the {self.memory.phase} = {self.memory.breakdown()}"
        if self.memory.host:
            line += f"; host RAM for offload ~{self.memory.host / GIB:.0f} GiB per node"
        return line

    @property
    def batch_line(self) -> str:
        line = f"{self.per_device} per device x GA {self.grad_accum} x {self.world}"
        if self.samples_per_pack is None:
            return f"{line} = {self.global_batch}"
        packs = self.per_device * self.grad_accum * self.world
        return (f"{line} = {packs} packs x ~{self.samples_per_pack:.1f} samples = "
                f"~{packs * self.samples_per_pack:.0f} samples (global batch {self.global_batch})")

    def summary(self) -> str:
        """What the planner decided, with one line of why for each choice (printed by ``r1sft recipe``)."""
        lines = [
            f"{self.preset.name} {METHOD_NAMES[self.method]} SFT on {self.hardware}: {self.batch_line}",
            f"  memory estimate: {self.memory_line}",
        ]
        lines += [f"  - {reason}" for reason in self.reasons]
        lines += [f"  warning: {warning}" for warning in self.warnings]
        return "\n".join(lines)


def _display(path: Path) -> Path:
    """A path as recipes show it: relative to the project root when inside it."""
    try:
        return path.resolve().relative_to(paths.REPO_ROOT)
    except ValueError:
        return path


def parse_set(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to a dict, values read as YAML scalars (``true``, ``64``, ``1e-4``, text)."""
    from r1sft.yamlio import parse_assignments

    return parse_assignments(items, "--set")


def _ensure_tiny(preset: Preset, warnings: list[str]) -> Path | None:
    """Build the tiny model on first use (r1sft.tiny), so the recipe runs as soon as it is written."""
    try:
        from r1sft.tiny import ensure_tiny_model
    except ModuleNotFoundError as exc:
        if exc.name not in ("r1sft.tiny",):
            raise
        warnings.append(f"r1sft.tiny is not installed: build {preset.model_path} before training")
        return None
    return Path(ensure_tiny_model(preset.name))


def _mean_tokens(datasets: list[str], data_dir: Path) -> tuple[float, str]:
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


def _local_folder(model_path: str) -> Path | None:
    folder = Path(model_path)
    if not folder.is_absolute():
        folder = paths.REPO_ROOT / folder
    return folder if (folder / "config.json").is_file() else None


def _divisors_desc(n: int) -> list[int]:
    return [d for d in range(n, 0, -1) if n % d == 0]


def _fmt_gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"


def uncheckpointed_layers(config: dict, preset: Preset, gpu_mem: float, world: int, fused: bool | None = None) -> int:
    """How many of the last decoder layers ``r1sft train`` can run without gradient checkpointing for ``config``
    (a LLaMA-Factory training config) within the memory budget: 0 where checkpointing is off, on CPU, or nothing
    more fits. The planner writes it in the recipe's header; the launcher recomputes it for the config it launches
    (edits and overrides included) and hands it to r1sft.partial_checkpointing. ``fused``: whether the run gets
    r1sft.fused_lora (None: its default for ``config``)."""
    if config.get("disable_gradient_checkpointing") or config.get("use_cpu") or preset.tiny:
        return 0
    if (config.get("finetuning_type", "lora") != "lora" or config.get("quantization_bit") or config.get("use_dora")
            or config.get("pure_bf16")):
        # measured for LoRA only (docs/performance.md update 5); the other methods' counts carry more margin
        return 0
    method = "lora"
    stage, offload = ZERO[_deepspeed_from_path(str(config["deepspeed"]))] if config.get("deepspeed") else (None, False)
    args = dict(
        method=method, seq_len=int(config.get("cutoff_len", 2048)),
        micro_batch=int(config.get("per_device_train_batch_size", 8)), world_size=max(1, world),
        zero_stage=stage, offload=offload, gradient_checkpointing=True,
        liger=bool(config.get("enable_liger_kernel")), lora_rank=int(config.get("lora_rank", 8)),
        lora_dropout=float(config.get("lora_dropout", 0.0)),
        # new tokens (or asked for) make embed_tokens and lm_head trainable copies: ~20 GiB more for a 7B model
        resize_vocab=any(config.get(key) for key in ("add_special_tokens", "add_tokens", "resize_vocab",
                                                      "additional_target")),
        fused_lora=fused_lora.applies_to(config, {}) if fused is None else fused,
    )
    budget = gpu_mem * GIB * HEADROOM
    kept = 0
    while kept < preset.shape.layers - 1 and estimate_memory(
            preset.shape, **args, uncheckpointed_layers=kept + 1).peak <= budget:
        kept += 1
    return kept


def _fit_advice(method: str, gc_override: Any) -> str:
    """What could make a plan fit, leaving out what the request already does."""
    options = ["more GPUs (GPUS=, NODES=)", "a shorter --cutoff"]
    lighter = {"full": "--method lora or qlora", "lora": "--method qlora", "dora": "--method lora or qlora"}
    if method in lighter:
        options.insert(1, lighter[method])
    if gc_override:  # disable_gradient_checkpointing asked for on the command line
        options.append("gradient checkpointing (drop --set disable_gradient_checkpointing)")
    return "use " + ", ".join(options[:-1]) + " or " + options[-1]


def _deepspeed_from_path(value: str) -> str:
    match = re.fullmatch(r"(?:.*/)?ds_configs/(z0|z2|z3|z3_offload)\.json", str(value))  # relative or absolute
    if not match:
        raise R1sftError(f"--set deepspeed={value}: use --deepspeed {{{','.join(DEEPSPEED_CHOICES)}}}")
    return match.group(1)


def plan_recipe(request: RecipeRequest, *, data_dir: Path | None = None, build_tiny: bool = True) -> Plan:
    """Decide every value of the recipe for ``request``. Raises R1sftError for requests that cannot work."""
    data_dir = data_dir or paths.DATA_DIR
    warnings: list[str] = []
    reasons: list[str] = []
    why: dict[str, str] = {}
    from r1sft.recipe import lf

    overrides = lf.coerce_booleans(dict(request.overrides), lf.TRAIN)  # before the planner reads any of them

    # ---- model, method, template -----------------------------------------------------------------------
    preset = get_preset(request.model)
    method = request.method
    if method not in METHODS:
        raise R1sftError(f"unknown method '{method}': choose one of {', '.join(METHODS)}")
    cat = catalogue()
    defaults = {**cat["defaults"], **preset.defaults}

    model_path = str(overrides.pop("model_name_or_path", None) or request.model_path or preset.model_path)
    if preset.tiny and model_path == preset.model_path and build_tiny:
        built = _ensure_tiny(preset, warnings)
        if built is not None:
            model_path = _display(built).as_posix()
    folder = _local_folder(model_path)
    if folder is not None:
        preset = with_local_shape(preset, folder)
        reasons.append(f"shape read from {_display(folder / 'config.json')}")
    elif not (preset.hub_id and model_path == preset.hub_id) and not preset.tiny:
        warnings.append(f"{model_path} is not a local model folder: planning from {preset.name}'s catalogue shape")
    shape = preset.shape
    family = preset.family

    template = overrides.pop("template", None) or request.template
    think = (request.think or "on").lower()
    if think not in ("on", "off"):
        raise R1sftError(f"THINK={request.think}: expected on or off")
    if think == "off" and not family.nothink_template:
        raise R1sftError(
            f"THINK=off: {family.name} has no no-think template (only Qwen3 switches with qwen3_nothink); "
            f"its template '{family.template}' trains <think> text verbatim"
        )
    if think == "off" and template and template != family.nothink_template:
        raise R1sftError(f"THINK=off with TEMPLATE={template}: they disagree (THINK=off trains with "
                         f"{family.nothink_template}); drop one")
    if think == "off":
        template = family.nothink_template
    template = template or family.template
    if template not in family.templates:
        raise R1sftError(
            f"template '{template}' does not match {preset.name} ({family.name} models use "
            f"{' or '.join(family.templates)})"
        )

    # ---- data --------------------------------------------------------------------------------------------
    if request.datasets is not None and "dataset" in overrides:
        raise R1sftError("DATASET and --set dataset both name the datasets: use one")
    datasets = request.datasets or split_names(overrides.pop("dataset", None)) or [SAMPLE_DATASET]
    repeated = sorted({name for name in datasets if datasets.count(name) > 1})
    if repeated:
        raise R1sftError(f"dataset {', '.join(repeated)} named twice: LLaMA-Factory would train on it twice; to weight "
                         "a dataset, mix it with r1sft convert (docs/data.md)")
    if "dataset_dir" in overrides:
        raise R1sftError("--set dataset_dir: recipes read datasets from data/ (register them in data/dataset_info.json)")
    special = datasets_special_tokens(datasets, data_dir, require=True)
    if special and method == "qlora":
        raise R1sftError(
            f"dataset {','.join(datasets)} needs special tokens {','.join(special)}, and QLoRA cannot resize a 4-bit "
            "model's embeddings (LLaMA-Factory refuses): use --method lora, or convert the data without --think thought"
        )

    # ---- hardware ----------------------------------------------------------------------------------------
    gpus = int(request.gpus if request.gpus is not None else defaults["gpus"])
    nodes = int(request.nodes if request.nodes is not None else defaults["nodes"])
    gpu_mem = float(request.gpu_mem if request.gpu_mem is not None else defaults["gpu_mem"])
    if gpus < 0 or nodes < 1 or gpu_mem <= 0:
        raise R1sftError(f"GPUS={gpus} NODES={nodes} GPU_MEM={gpu_mem:g}: expected GPUS >= 0, NODES >= 1, GPU_MEM > 0")
    cpu = gpus == 0
    if cpu and nodes > 1:
        raise R1sftError(f"GPUS=0 NODES={nodes}: CPU recipes run in one process on one machine")
    world = max(1, gpus) * nodes
    if cpu and method == "qlora":
        warnings.append("QLoRA loads 4-bit weights with bitsandbytes, which needs a CUDA GPU: train this on a GPU")

    max_ctx = shape.max_ctx
    cutoff_override = overrides.pop("cutoff_len", None)
    if request.cutoff is not None and cutoff_override is not None and cutoff_override != request.cutoff:
        raise R1sftError(f"CUTOFF={request.cutoff} and --set cutoff_len={cutoff_override} disagree: use one")
    if request.cutoff is not None or cutoff_override is not None:
        value = request.cutoff if request.cutoff is not None else cutoff_override
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise R1sftError(f"cutoff_len={value}: expected a positive whole number of tokens")
        cutoff = value
        if cutoff < 1:
            raise R1sftError(f"CUTOFF={cutoff}: expected a positive number of tokens")
        if max_ctx and cutoff > max_ctx:
            raise R1sftError(f"CUTOFF={cutoff} exceeds {preset.name}'s context window of {max_ctx} tokens")
        why["cutoff_len"] = "set on the command line; longer samples are truncated, losing their end and EOS"
    else:
        cutoff = int(defaults["cutoff"])
        if max_ctx and cutoff > max_ctx:
            cutoff = max_ctx
            why["cutoff_len"] = f"capped at {preset.name}'s context window"
        else:
            why["cutoff_len"] = "longer samples are truncated (their end and EOS lost): drop them at conversion"

    global_batch = int(request.global_batch if request.global_batch is not None else defaults["global_batch"])
    if global_batch < 1:
        raise R1sftError(f"GLOBAL_BATCH={global_batch}: expected a positive number of samples")
    ranks = f"{max(1, gpus)} GPU{'s' if gpus > 1 else ''} x {nodes} node{'s' if nodes > 1 else ''}"
    if cpu:
        ranks = "1 CPU process"
    if global_batch % world:
        lower, upper = global_batch // world * world, (global_batch // world + 1) * world
        raise R1sftError(
            f"GLOBAL_BATCH={global_batch} cannot be split over {ranks} = {world} ranks: per-device batch x gradient "
            f"accumulation x {world} must equal {global_batch} exactly; use a multiple of {world} "
            f"(e.g. {lower or upper} or {upper})"
        )
    per_rank = global_batch // world

    # ---- per-device batch, DeepSpeed, checkpointing: the smallest machinery that fits --------------------
    fixed_pdb = overrides.pop("per_device_train_batch_size", None)
    fixed_ga = overrides.pop("gradient_accumulation_steps", None)
    for key, value in (("per_device_train_batch_size", fixed_pdb), ("gradient_accumulation_steps", fixed_ga)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise R1sftError(f"--set {key}={value}: expected a whole number of at least 1")
    if fixed_pdb is not None and fixed_ga is not None and int(fixed_pdb) * int(fixed_ga) * world != global_batch:
        raise R1sftError(
            f"per_device_train_batch_size {fixed_pdb} x gradient_accumulation_steps {fixed_ga} x {world} ranks = "
            f"{int(fixed_pdb) * int(fixed_ga) * world}, not the global batch {global_batch}"
        )
    if fixed_ga is not None:
        if per_rank % int(fixed_ga):
            raise R1sftError(
                f"gradient_accumulation_steps {fixed_ga} does not divide {global_batch} / {world} ranks = {per_rank}"
            )
        pdb_options = [per_rank // int(fixed_ga)]
    elif fixed_pdb is not None:
        if per_rank % int(fixed_pdb):
            raise R1sftError(
                f"per_device_train_batch_size {fixed_pdb} does not divide {global_batch} / {world} ranks = {per_rank}"
            )
        pdb_options = [int(fixed_pdb)]
    else:
        cap = max(1, MICROBATCH_TOKENS["cpu" if cpu else "gpu"] // cutoff)
        pdb_options = [d for d in _divisors_desc(per_rank) if d <= cap] or [1]
    samples_per_pack = None
    if request.packing:
        if fixed_pdb is not None or fixed_ga is not None:
            raise R1sftError("--packing plans the per-device batch (1 pack) and the accumulation (packs per step) "
                             "itself: drop per_device_train_batch_size / gradient_accumulation_steps from --set")
        mean_tokens, source = _mean_tokens(datasets, data_dir)
        samples_per_pack = max(1.0, cutoff * PACK_FILL / mean_tokens)
        if samples_per_pack * world > 1.5 * global_batch:  # one pack per rank is the least a step can hold
            warnings.append(
                f"--packing: a {cutoff}-token pack holds ~{samples_per_pack:.0f} samples of {mean_tokens:.0f} tokens, "
                f"so a step of {world} pack{'s' if world > 1 else ''} holds ~{samples_per_pack * world:.0f} samples, "
                f"over the global batch of {global_batch}: pack to a shorter --cutoff, raise GLOBAL_BATCH, or do not pack")
        pdb_options = [1]

    gc_override = overrides.pop("disable_gradient_checkpointing", None)
    gc_options = [False, True] if gc_override is None else [not bool(gc_override)]
    liger_override = overrides.pop("enable_liger_kernel", None)
    liger = (not cpu) if liger_override is None else bool(liger_override)

    ds_override = overrides.pop("deepspeed", None)
    ds_request = request.deepspeed if ds_override is None else _deepspeed_from_path(ds_override)
    if ds_request not in DEEPSPEED_CHOICES:
        raise R1sftError(f"DEEPSPEED={ds_request}: choose one of {', '.join(DEEPSPEED_CHOICES)}")
    # DeepSpeed on CPU (its CPU accelerator, gloo) is slow but real: it lets the ZeRO-3 launch path be tested
    # without a GPU, so an explicit request is honoured; auto never picks it on CPU.
    if method == "qlora" and ds_request == "z3_offload":
        raise R1sftError("DEEPSPEED=z3_offload with QLoRA: bitsandbytes 4-bit weights cannot be offloaded; use z3")
    lora = cat["defaults"]["lora"]
    memory_args = dict(
        method=method,
        seq_len=cutoff,
        world_size=world,
        liger=liger,
        bf16=not cpu,
        on_gpu=not cpu,
        lora_rank=int(lora["rank"]),
        lora_dropout=float(lora["dropout"]),
        resize_vocab=bool(special),
        gpus_per_node=max(1, gpus),
    )

    def estimate(ds: str | None, gc: bool, pdb: int) -> MemoryEstimate:
        stage, offload = ZERO[ds] if ds else (None, False)
        # PEFT's own LoRA layer: a recipe must fit under plain llamafactory-cli too. What r1sft train's fused layer
        # saves (r1sft.fused_lora) goes to partial checkpointing, which only r1sft train turns on.
        return estimate_memory(shape, zero_stage=stage, offload=offload, gradient_checkpointing=gc, micro_batch=pdb,
                               **memory_args)

    budget = gpu_mem * GIB * HEADROOM
    n_params = shape.total_params
    if ds_request == "auto":
        if cpu:
            ds_order: list[str | None] = [None]
        elif world == 1:
            # LoRA included: under r1sft train (fused LoRA layers, bf16 inputs) fp32 adapters under autocast beat
            # ZeRO-2's bf16 mode on one GPU, 9,176 vs 8,857 tokens/s for Qwen2.5-7B on an H100 (docs/performance.md)
            ds_order = [None] if method == "qlora" else [None, "z3_offload"]
        elif method == "qlora":
            ds_order = [None, "z3"]
        elif method == "full" and n_params >= ZERO3_FULL_FROM:
            ds_order = ["z3", "z3_offload"]
        else:
            ds_order = [None, "z2", "z3", "z3_offload"]
    else:
        ds_order = [None if ds_request == "none" else ds_request]

    chosen = None
    tried: list[tuple[str | None, bool, int, MemoryEstimate]] = []
    for ds in ds_order:
        for gc in gc_options:
            for pdb in pdb_options:
                est = estimate(ds, gc, pdb)
                tried.append((ds, gc, pdb, est))
                if est.peak <= budget:
                    chosen = (ds, gc, pdb, est)
                    break
            if chosen:
                break
        if chosen:
            break
    limit = f"{HEADROOM:.0%} of {gpu_mem:g} GiB" if not cpu else f"{HEADROOM:.0%} of {gpu_mem:g} GiB of RAM"
    if chosen is None:
        best = min(tried, key=lambda t: t[3].peak)
        if ds_request == "auto":
            raise R1sftError(
                f"{preset.name} {METHOD_NAMES[method]} SFT at cutoff {cutoff} does not fit {ranks} of {gpu_mem:g} GiB: "
                f"the smallest plan ({best[0] or 'no DeepSpeed'}, gradient checkpointing "
                f"{'on' if best[1] else 'off'}, batch {best[2]}) needs ~{_fmt_gib(best[3].peak)} per "
                f"{'process' if cpu else 'GPU'} (budget {limit}); {_fit_advice(method, gc_override)}"
            )
        chosen = best
        warnings.append(
            f"DEEPSPEED={ds_request}: estimated {_fmt_gib(best[3].peak)} per GPU exceeds {limit}: expect out-of-memory"
        )
    ds, gc, pdb, est = chosen
    ga = per_rank // pdb if samples_per_pack is None else max(1, round(per_rank / samples_per_pack))

    # ---- reasons for the hardware choices ----------------------------------------------------------------
    first = tried[0][3]
    if cpu:
        reasons.append("CPU: use_cpu, fp32 (bf16 fails without a GPU), no liger (needs CUDA)"
                       + (f", DeepSpeed {ds} on its CPU accelerator" if ds else ", no DeepSpeed"))
    elif ds_request != "auto":
        why["deepspeed"] = f"DEEPSPEED={ds_request} on the command line"
        reasons.append(f"DeepSpeed {ds or 'none'}: asked for on the command line")
    elif ds is None and world == 1:
        reasons.append(
            f"no DeepSpeed: one GPU and the model fits ({_fmt_gib(est.peak)}); ZeRO-3 is ~1.8x slower on one GPU"
        )
    elif ds is None:
        reasons.append(f"no DeepSpeed (DDP): weights and optimizer fit each GPU unsharded ({_fmt_gib(est.peak)})")
    elif method == "full" and n_params >= ZERO3_FULL_FROM and ds == "z3":
        why["deepspeed"] = f"full SFT of a {n_params / 1e9:.1f}B model: shard weights, gradients and optimizer"
        reasons.append(
            f"ZeRO-3: full SFT of {n_params / 1e9:.1f}B parameters shards weights too, as the anchor recipes did "
            f"({_fmt_gib(est.peak)} per GPU)"
        )
    else:
        without = min((t[3] for t in tried if t[0] != ds), key=lambda e: e.peak, default=first)
        label = {"z2": "ZeRO-2", "z3": "ZeRO-3", "z3_offload": "ZeRO-3 with CPU offload"}[ds]
        why["deepspeed"] = f"{label}: the lighter options need ~{_fmt_gib(without.peak)} per GPU, over {limit}"
        line = f"{label}: without it ~{_fmt_gib(without.peak)} per GPU (over {limit}); with it {_fmt_gib(est.peak)}"
        if est.host:
            line += f"; needs ~{est.host / GIB:.0f} GiB of host RAM per node"
        reasons.append(line)

    if gc:
        no_gc = [t[3] for t in tried if t[0] == ds and not t[1]]
        if no_gc:
            why["disable_gradient_checkpointing"] = (
                f"checkpointing on: without it ~{_fmt_gib(min(e.peak for e in no_gc))} per "
                f"{'process' if cpu else 'GPU'}"
            )
        else:
            why["disable_gradient_checkpointing"] = "checkpointing on: set on the command line"
        reasons.append(f"gradient checkpointing: {why['disable_gradient_checkpointing'].split(': ', 1)[1]}")
    else:
        why["disable_gradient_checkpointing"] = (
            "checkpointing off: fits without it" if gc_override is None else "set on the command line"
        )
        reasons.append(f"no gradient checkpointing: activations fit ({_fmt_gib(est.parts.get('activations', 0))})")

    if not cpu:
        if liger:
            with_logits = estimate_memory(
                shape,
                zero_stage=ZERO[ds][0] if ds else None,
                offload=ZERO[ds][1] if ds else False,
                gradient_checkpointing=gc,
                micro_batch=pdb,
                **{**memory_args, "liger": False},
            )
            saved = with_logits.parts.get("logits", 0) - est.parts.get("logits", 0)
            why["enable_liger_kernel"] = f"fused kernels; fused cross-entropy never holds the logits (-{_fmt_gib(saved)})"
            reasons.append(f"liger kernel: {why['enable_liger_kernel']}")
        else:
            why["enable_liger_kernel"] = "set on the command line"
    else:
        why["enable_liger_kernel"] = "liger's kernels need a CUDA GPU"

    pdb_why = f"{pdb} x {cutoff} = {pdb * cutoff} tokens per micro-batch"
    if len(pdb_options) == 1 and (fixed_pdb is not None or fixed_ga is not None):
        pdb_why += " (set on the command line)"
    per = f"{pdb} per device x GA {ga} x {max(1, gpus)} {'GPUs' if gpus > 1 else 'GPU' if gpus == 1 else 'process'}"
    if nodes > 1:
        per += f" x {nodes} nodes"
    if samples_per_pack is None:
        why["per_device_train_batch_size"] = pdb_why
        why["gradient_accumulation_steps"] = f"{per} = {global_batch} (global batch)"
        reasons.append(f"batch: {per} = {global_batch}; {pdb_why}")
    else:
        packs = pdb * ga * world
        why["per_device_train_batch_size"] = f"1 pack of up to {cutoff} tokens holding ~{samples_per_pack:.1f} samples"
        why["gradient_accumulation_steps"] = (f"{per} = {packs} pack{'s' if packs > 1 else ''} = "
                                              f"~{packs * samples_per_pack:.0f} samples "
                                              f"(global batch {global_batch})")
        why["packing"] = f"~{samples_per_pack:.1f} samples per {cutoff}-token pack ({source})"
        why["neat_packing"] = "packed samples never attend to each other (r1sft train: varlen attention, no dense mask)"
        reasons.append(f"batch: {per} = {packs} pack{'s' if packs > 1 else ''} of ~{samples_per_pack:.1f} samples = "
                       f"~{packs * samples_per_pack:.0f} per step, for a global batch of {global_batch}")
        reasons.append(f"neat packing: {source}"
                       + (" (dataset_info.json r1sft.mean_tokens)" if source.startswith("measured") else
                          ": convert with --tokenizer to measure it")
                       + f"; each micro-batch is one {cutoff}-token pack, its samples kept apart by varlen attention")

    # ---- the values --------------------------------------------------------------------------------------
    method_dir = f"saves/{preset.name}/{method}"
    train: dict[str, Any] = {}
    # model
    train["model_name_or_path"] = model_path
    if special:
        train["add_special_tokens"] = ",".join(special)
        why["add_special_tokens"] = f"tags {'/'.join(datasets)} needs (dataset_info.json r1sft.special_tokens)"
        if method != "full":
            why["add_special_tokens"] += "; embeddings become trainable"
    if method == "qlora":
        train["quantization_bit"] = 4
        train["quantization_method"] = "bnb"
        why["quantization_bit"] = "QLoRA: 4-bit NF4 base weights (bitsandbytes)"
    train["trust_remote_code"] = False
    train["flash_attn"] = "sdpa"
    train["enable_liger_kernel"] = liger
    train["disable_gradient_checkpointing"] = not gc
    # method
    train["stage"] = "sft"
    train["do_train"] = True
    train["finetuning_type"] = "full" if method == "full" else "lora"
    if method != "full":
        train["lora_rank"] = int(lora["rank"])
        train["lora_alpha"] = int(lora["alpha"])
        train["lora_dropout"] = float(lora["dropout"])
        train["lora_target"] = str(lora["target"])
    if method == "dora":
        train["use_dora"] = True
    if ds:
        train["deepspeed"] = f"ds_configs/{ds}.json"
    # dataset
    train["dataset"] = ",".join(datasets)
    train["dataset_dir"] = _display(data_dir).as_posix()
    train["template"] = template
    if template == "qwen3":
        train["enable_thinking"] = True
    train["cutoff_len"] = cutoff
    if samples_per_pack is not None:
        train["packing"] = True
        train["neat_packing"] = True
    train["preprocessing_num_workers"] = 1 if cpu else 16
    train["dataloader_num_workers"] = 0 if cpu else 4
    # output
    train["output_dir"] = f"{method_dir}/sft"
    train["logging_steps"] = 1 if preset.tiny else 10
    if preset.tiny:
        train["save_strategy"] = "no"
        why["save_strategy"] = "a demo: no checkpoints, so a rerun trains afresh; the adapter is saved at the end"
    else:
        train["save_steps"] = 200
        train["save_total_limit"] = 2
    train["plot_loss"] = True
    if preset.tiny:
        train["overwrite_output_dir"] = True
    train["report_to"] = "tensorboard"
    # train
    train["per_device_train_batch_size"] = pdb
    train["gradient_accumulation_steps"] = ga
    train["learning_rate"] = float(defaults["learning_rate"][method])
    train["num_train_epochs"] = float(defaults["epochs"])
    if defaults.get("max_steps"):
        train["max_steps"] = int(defaults["max_steps"])
        why["max_steps"] = f"a demo: {defaults['max_steps']} steps of {global_batch} samples (wins over epochs)"
    train["lr_scheduler_type"] = str(defaults["scheduler"])
    train["warmup_ratio"] = float(defaults["warmup_ratio"])
    if cpu and not ds:
        train["use_cpu"] = True
    elif cpu:
        # use_cpu breaks DeepSpeed's batch arithmetic under torchrun (it sees a world of 1); with no GPU visible,
        # HF picks the CPU anyway and DeepSpeed runs on its CPU accelerator.
        why["deepspeed"] = f"DEEPSPEED={ds} on CPU (no use_cpu: it confuses DeepSpeed's world size)"
    else:
        train["bf16"] = True
    train["dataloader_pin_memory"] = not cpu
    if not cpu:
        train["accelerator_config"] = {"non_blocking": True}
        why["accelerator_config"] = "copy the pinned batch to the GPU without a host sync (+1% tokens/s, H100)"
    train["ddp_timeout"] = 180000000

    rate_kind = {"full": "full SFT", "lora": "LoRA", "dora": "DoRA", "qlora": "QLoRA"}[method]
    why["learning_rate"] = f"{rate_kind} default" + (" for a random-weight tiny model" if preset.tiny else "")
    if template == "qwen3":
        why["template"] = "Qwen3 reasoning template (THINK=off: qwen3_nothink)"
        why["enable_thinking"] = "train the <think> block; turns without one get an empty block"
    elif template == "qwen3_nothink":
        why["template"] = "THINK=off: plain ChatML, no <think> handling"
    why["ddp_timeout"] = "rank 0 tokenizes everything first: keep the other ranks from timing out"
    why["report_to"] = "loss curves: tensorboard --logdir <output_dir>/runs"
    if cpu:
        why["use_cpu"] = "no GPU: bf16 would fail on a CPU"
    if preset.tiny:
        why["overwrite_output_dir"] = "the demo may be run again"

    # ---- --set: everything else, checked against LLaMA-Factory's own keys -------------------------------
    extra_keys: list[str] = []
    if overrides:
        from r1sft.recipe import lf

        lf.refuse_unknown_keys(overrides, lf.TRAIN, "--set")
        bad = lf.type_problems(overrides, lf.TRAIN)
        if bad:
            raise R1sftError(f"--set: {bad[0]}")
        extra_keys = [key for key in overrides if key not in train]
        for key, value in overrides.items():
            train[key] = value
            why[key] = "set on the command line"
    if not cpu and "tokenized_path" not in train:
        # LLaMA-Factory reuses a tokenized_path as it is ("will ignore other data arguments"): one folder per set
        # of everything tokenization depends on, so a packed and an unpacked recipe never share one.
        train["tokenized_path"] = tokenized_path(train, preset.name, datasets)
        why["tokenized_path"] = "tokenize once, reuse: delete it after changing the data"

    # ---- partial checkpointing: the layers memory still holds run without it (under `r1sft train`) ----------
    fused = fused_lora.applies_to(train, {})  # r1sft train's default for this recipe
    kept = uncheckpointed_layers(train, preset, gpu_mem, world, fused=fused) if gc else 0
    if kept:
        est = estimate_memory(shape, zero_stage=ZERO[ds][0] if ds else None, offload=ZERO[ds][1] if ds else False,
                              gradient_checkpointing=True, micro_batch=pdb, uncheckpointed_layers=kept,
                              fused_lora=fused, **{**memory_args, "seq_len": int(train["cutoff_len"])})
        why["disable_gradient_checkpointing"] += (
            f"; r1sft train leaves the last {kept} of {shape.layers} layers uncheckpointed")
        with_fused = " with r1sft.fused_lora's LoRA layers" if fused else ""
        reasons.append(f"partial checkpointing: under r1sft train the last {kept} of {shape.layers} layers keep their "
                       f"activations and skip recomputation ({_fmt_gib(est.peak)} per GPU{with_fused}; "
                       "R1SFT_UNCHECKPOINTED_LAYERS=0 checkpoints all)")

    # ---- merge (export) recipe for adapters --------------------------------------------------------------
    merge = None
    if method in ADAPTER_METHODS:
        merge = {
            "model_name_or_path": model_path,
            "adapter_name_or_path": train["output_dir"],
            "template": train["template"],
            "finetuning_type": "lora",
            "trust_remote_code": False,
        }
        # the merged model must be built with the tokenizer and model settings training used
        for key in ("trust_remote_code", "add_tokens", "add_special_tokens", "resize_vocab"):
            if key in train:
                merge[key] = train[key]
        merge.update(
            {
                "export_dir": f"{method_dir}/merged",
                "export_size": 5,
                "export_device": "cpu",
                "export_legacy_format": False,
            }
        )

    out_dir = (request.out_dir or paths.RECIPES_DIR) / preset.name
    sft_path = out_dir / f"{method}_sft.yaml"
    merge_path = out_dir / f"{method}_merge.yaml" if merge else None
    command, make_command = _commands(request, preset.name, method, gpus)
    return Plan(
        request=request,
        preset=preset,
        method=method,
        model_path=model_path,
        template=template,
        datasets=datasets,
        special_tokens=special,
        cpu=cpu,
        gpus=gpus,
        nodes=nodes,
        gpu_mem=gpu_mem,
        cutoff=cutoff,
        global_batch=global_batch,
        per_device=pdb,
        grad_accum=ga,
        deepspeed=ds,
        gradient_checkpointing=gc,
        liger=liger,
        memory=est,
        samples_per_pack=samples_per_pack,
        uncheckpointed_layers=kept,
        train=train,
        extra_keys=extra_keys,
        merge=merge,
        why=why,
        reasons=reasons,
        warnings=warnings,
        command=command,
        make_command=make_command,
        sft_path=sft_path,
        merge_path=merge_path,
    )


# What LLaMA-Factory's tokenized dataset depends on (besides the data files themselves).
TOKENIZATION_KEYS = ("model_name_or_path", "template", "dataset", "dataset_dir", "cutoff_len", "packing",
                     "neat_packing", "enable_thinking", "preserve_thinking", "add_tokens", "add_special_tokens",
                     "split_special_tokens", "mask_history", "train_on_prompt", "max_samples", "tool_format",
                     "default_system", "val_size", "eval_dataset", "seed", "mix_strategy", "interleave_probs",
                     "eval_on_each_dataset", "streaming")


def tokenized_path(train: dict, preset_name: str, datasets: list[str]) -> str:
    """The tokenized-dataset folder for ``train``'s tokenization settings (the launcher recomputes it for edits)."""
    settings = json.dumps({key: train.get(key) for key in TOKENIZATION_KEYS}, sort_keys=True, default=str)
    digest = hashlib.sha256(settings.encode()).hexdigest()[:8]
    packed = "-packed" if train.get("packing") else ""
    return (f".cache/tokenized/{preset_name}-{train['template']}-{'+'.join(datasets)}-{train['cutoff_len']}"
            f"{packed}-{digest}")


def split_names(value: Any) -> list[str] | None:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (dataset lists and the like); None stays None."""
    if value is None:
        return None
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _commands(request: RecipeRequest, preset: str, method: str, gpus: int) -> tuple[str, str]:
    """The canonical ``r1sft recipe`` command for this request, and its ``make recipe`` twin."""
    cli = [f"r1sft recipe {preset}", f"--method {method}", f"--gpus {gpus}"]
    make = [f"make recipe MODEL={preset}", f"METHOD={method}", f"GPUS={gpus}"]
    options = [
        ("nodes", "--nodes", "NODES"),
        ("gpu_mem", "--gpu-mem", "GPU_MEM"),
        ("cutoff", "--cutoff", "CUTOFF"),
        ("global_batch", "--global-batch", "GLOBAL_BATCH"),
        ("think", "--think", "THINK"),
        ("template", "--template", "TEMPLATE"),
        ("model_path", "--model-path", "MODEL_PATH"),
    ]
    if request.datasets:
        cli.append(f"--dataset {','.join(request.datasets)}")
        make.append(f"DATASET={','.join(request.datasets)}")
    for attr, flag, var in options:
        value = getattr(request, attr)
        if value is not None:
            shown = _set_text(value)
            cli.append(f"{flag} {shown}")
            make.append(f"{var}={shown}")
    if request.deepspeed != "auto":
        cli.append(f"--deepspeed {request.deepspeed}")
        make.append(f"DEEPSPEED={request.deepspeed}")
    if request.packing:
        cli.append("--packing")
        make.append("PACKING=1")
    if request.overrides:
        pairs = [f"{key}={_set_text(value)}" for key, value in request.overrides.items()]
        cli += [f"--set {pair}" for pair in pairs]
        make.append(f'SET="{" ".join(pairs)}"')
    return " ".join(cli), " ".join(make)


def _set_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return re.sub(r"e([-+])0*(\d)", r"e\1\2", f"{value:g}").replace("e+", "e")  # 2e-05 -> 2e-5
    return str(value)

