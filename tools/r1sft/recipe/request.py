"""What the user asked for, checked once: ``RecipeRequest`` plus ``--set`` split into planner inputs and the
LLaMA-Factory keys passed through as they are.

A request that cannot work is refused here, in one line naming the option to change; everything after this
module can trust its ``Inputs``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1sft import paths
from r1sft.errors import R1sftError
from r1sft.patches import sequence_parallel as sequence_parallel_patch
from r1sft.presets import METHODS, Preset, catalogue, get_preset, with_local_shape
from r1sft.recipe.data import SAMPLE_DATASET, datasets_special_tokens, empty_dataset, load_dataset_info

# The longest RoPE stretch over the model's context a recipe may ask for (Qwen2.5/Qwen3's YaRN factor 4).
ROPE_SCALING_LIMIT = 4
REASONING_TEMPLATES = ("qwen3",)  # LLaMA-Factory ReasoningTemplates: enable_thinking decides where <think> goes
DEEPSPEED_CHOICES = ("auto", "none", "z0", "z2", "z3", "z3_offload")
# --set keys the planner reads as inputs (each is decided with the rest of the plan); every other key is passed on.
PLANNED_SET_KEYS = ("model_name_or_path", "template", "dataset", "dataset_dir", "cutoff_len",
                    "per_device_train_batch_size", "gradient_accumulation_steps", "disable_gradient_checkpointing",
                    "use_unsloth_gc", "enable_liger_kernel", "deepspeed")


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
    sequence_parallel: int | str | None = None  # GPUs each trace is split over, or "auto" (recipe.sequence)
    overrides: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None


@dataclass
class Notes:
    """The reasons and warnings a plan collects as it decides. ``why``: the comment next to a key; ``reasons``:
    one line per choice (``r1sft recipe`` prints them all); ``header``: the reasons no key carries, which the
    recipe's header says."""

    why: dict[str, str] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def reason(self, text: str, key: str | None = None) -> None:
        """A choice's reason; ``key``: the recipe key whose comment says it (then the header does not)."""
        self.reasons.append(text)
        if key is None:
            self.header.append(text)


@dataclass
class Inputs:
    """A checked request: the planner's inputs, every default filled in."""

    request: RecipeRequest
    preset: Preset
    method: str
    defaults: dict[str, Any]  # the catalogue's defaults with the preset's own on top
    model_path: str
    template: str
    datasets: list[str]
    special_tokens: list[str]
    gpus: int
    nodes: int
    gpu_mem: float
    cutoff: int
    global_batch: int
    fixed_per_device: int | None  # --set per_device_train_batch_size
    fixed_grad_accum: int | None  # --set gradient_accumulation_steps
    gc_override: Any  # --set disable_gradient_checkpointing
    offload_override: Any  # --set use_unsloth_gc (offloaded checkpointing)
    liger_override: Any  # --set enable_liger_kernel
    deepspeed: str  # one of DEEPSPEED_CHOICES
    passthrough: dict[str, Any]  # the other --set keys, checked later against LLaMA-Factory's own
    enable_thinking: bool | None = None  # the reasoning template's mode (THINK=on/off); None for other templates
    sequence_parallel: int = 1  # ranks each trace is split over (1: none)

    @property
    def cpu(self) -> bool:
        return self.gpus == 0

    @property
    def world(self) -> int:
        # a CPU recipe runs one process, or one per shard of a trace (r1sft's test path of --sequence-parallel)
        return (self.gpus or self.sequence_parallel) * self.nodes

    @property
    def data_parallel(self) -> int:
        """Ranks that read different samples: every GPU, or every group of ``sequence_parallel`` GPUs."""
        return self.world // self.sequence_parallel

    @property
    def per_rank(self) -> int:
        return self.global_batch // self.world

    @property
    def ranks(self) -> str:
        if self.cpu:
            return f"{self.world} CPU process{'es' if self.world > 1 else ''}"
        return f"{max(1, self.gpus)} GPU{'s' if self.gpus > 1 else ''} x {self.nodes} node{'s' if self.nodes > 1 else ''}"


def display(path: Path) -> Path:
    """A path as recipes show it: relative to the project root when inside it."""
    try:
        return path.resolve().relative_to(paths.REPO_ROOT)
    except ValueError:
        return path


def parse_set(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to a dict, values read as YAML scalars (``true``, ``64``, ``1e-4``, text)."""
    from r1sft.yamlio import parse_assignments

    return parse_assignments(items, "--set")


def split_names(value: Any) -> list[str] | None:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (dataset lists and the like); None stays None."""
    if value is None:
        return None
    return [part.strip() for part in str(value).split(",") if part.strip()]


def read_request(request: RecipeRequest, notes: Notes, data_dir: Path, build_tiny: bool) -> Inputs:
    """Check ``request`` and fill in its defaults; raises R1sftError for requests that cannot work."""
    from r1sft.recipe import lf

    overrides = lf.coerce_booleans(dict(request.overrides), lf.TRAIN)  # before the planner reads any of them
    planned = {key: overrides.pop(key) for key in PLANNED_SET_KEYS if key in overrides}
    preset = get_preset(request.model)
    if request.method not in METHODS:
        raise R1sftError(f"unknown method '{request.method}': choose one of {', '.join(METHODS)}")
    preset, model_path = _model(request, planned, preset, notes, build_tiny)
    template, enable_thinking = _template(request, planned, preset, overrides)
    datasets, special = _datasets(request, planned, data_dir)
    defaults = {**catalogue()["defaults"], **preset.defaults}
    gpus, nodes, gpu_mem = _hardware(request, defaults, notes)
    inputs = Inputs(
        request=request, preset=preset, method=request.method, defaults=defaults, model_path=model_path,
        template=template,
        datasets=datasets, special_tokens=special, gpus=gpus, nodes=nodes, gpu_mem=gpu_mem, cutoff=0,
        global_batch=0, fixed_per_device=planned.get("per_device_train_batch_size"),
        fixed_grad_accum=planned.get("gradient_accumulation_steps"),
        gc_override=planned.get("disable_gradient_checkpointing"), offload_override=planned.get("use_unsloth_gc"),
        liger_override=planned.get("enable_liger_kernel"),
        deepspeed=request.deepspeed, passthrough=overrides, enable_thinking=enable_thinking,
    )
    inputs.cutoff = _cutoff(inputs, planned.get("cutoff_len"), notes)
    inputs.sequence_parallel = requested_degree(inputs)
    inputs.global_batch = _global_batch(inputs)
    _check_fixed_batch(inputs)
    inputs.deepspeed = _deepspeed(inputs, planned.get("deepspeed"))
    return inputs


def _model(request: RecipeRequest, planned: dict, preset: Preset, notes: Notes, build_tiny: bool
           ) -> tuple[Preset, str]:
    model_path = str(planned.get("model_name_or_path") or request.model_path or preset.model_path)
    if preset.tiny and model_path == preset.model_path and build_tiny:
        from r1sft.tiny import ensure_tiny_model  # built on first use, so the recipe runs as soon as it is written

        model_path = display(Path(ensure_tiny_model(preset.name))).as_posix()
    folder = _local_folder(model_path)
    if folder is not None:
        preset = with_local_shape(preset, folder)
        notes.reason(f"shape read from {display(folder / 'config.json')}")
    elif not (preset.hub_id and model_path == preset.hub_id) and not preset.tiny:
        notes.warnings.append(f"{model_path} is not a local model folder: planning from {preset.name}'s catalogue "
                              "shape")
    return preset, model_path


def _local_folder(model_path: str) -> Path | None:
    folder = Path(model_path)
    if not folder.is_absolute():
        folder = paths.REPO_ROOT / folder
    return folder if (folder / "config.json").is_file() else None


def _template(request: RecipeRequest, planned: dict, preset: Preset, overrides: dict) -> tuple[str, bool | None]:
    """The LLaMA-Factory template and, for Qwen3's reasoning template, its enable_thinking (THINK=on/off)."""
    family = preset.family
    template = planned.get("template") or request.template
    think = (request.think or "on").lower()
    if think not in ("on", "off"):
        raise R1sftError(f"THINK={request.think}: expected on or off")
    if think == "off":
        if not family.nothink_template:
            raise R1sftError(
                f"THINK=off: {preset.name} has no no-think template (Qwen3 has: qwen3 with enable_thinking off); "
                f"its template '{family.template}' trains <think> text as it is"
            )
        template = template or family.nothink_template
    template = template or family.template
    if template not in family.templates:
        raise R1sftError(
            f"template '{template}' does not match {preset.name} ({preset.name} uses "
            f"{' or '.join(family.templates)})"
        )
    if template not in REASONING_TEMPLATES:
        return template, None
    asked = overrides.get("enable_thinking")
    if asked is not None and request.think is not None and bool(asked) != (think == "on"):
        raise R1sftError(f"THINK={think} and --set enable_thinking={str(asked).lower()} disagree: use one")
    return template, (think == "on") if asked is None else bool(asked)


def _datasets(request: RecipeRequest, planned: dict, data_dir: Path) -> tuple[list[str], list[str]]:
    if request.datasets is not None and "dataset" in planned:
        raise R1sftError("DATASET and --set dataset both name the datasets: use one")
    datasets = request.datasets or split_names(planned.get("dataset")) or [SAMPLE_DATASET]
    repeated = sorted({name for name in datasets if datasets.count(name) > 1})
    if repeated:
        raise R1sftError(f"dataset {', '.join(repeated)} named twice: LLaMA-Factory would train on it twice; to weight "
                         "a dataset, mix it with r1sft convert (docs/data.md)")
    if "dataset_dir" in planned:
        raise R1sftError("--set dataset_dir: recipes read datasets from data/ (register them in data/dataset_info.json)")
    special = datasets_special_tokens(datasets, data_dir, require=True)
    info = load_dataset_info(data_dir) or {}
    for name in datasets:
        if name in info and (empty := empty_dataset(name, info[name], data_dir)):
            raise R1sftError(empty)
    if special and request.method == "qlora":
        raise R1sftError(
            f"dataset {','.join(datasets)} needs special tokens {','.join(special)}, and QLoRA cannot resize a 4-bit "
            "model's embeddings (LLaMA-Factory refuses): use --method lora, or convert the data without --think thought"
        )
    return datasets, special


def _hardware(request: RecipeRequest, defaults: dict, notes: Notes) -> tuple[int, int, float]:
    gpus = int(request.gpus if request.gpus is not None else defaults["gpus"])
    nodes = int(request.nodes if request.nodes is not None else defaults["nodes"])
    gpu_mem = float(request.gpu_mem if request.gpu_mem is not None else defaults["gpu_mem"])
    if gpus < 0 or nodes < 1 or gpu_mem <= 0:
        raise R1sftError(f"GPUS={gpus} NODES={nodes} GPU_MEM={gpu_mem:g}: expected GPUS >= 0, NODES >= 1, GPU_MEM > 0")
    if gpus == 0 and nodes > 1:
        raise R1sftError(f"GPUS=0 NODES={nodes}: CPU recipes run in one process on one machine")
    if gpus == 0 and request.method == "qlora":
        notes.warnings.append("QLoRA loads 4-bit weights with bitsandbytes, which needs a CUDA GPU: train this on a GPU")
    return gpus, nodes, gpu_mem


def _cutoff(inputs: Inputs, cutoff_override: Any, notes: Notes) -> int:
    request, preset = inputs.request, inputs.preset
    max_ctx = preset.shape.max_ctx
    if max_ctx and inputs.passthrough.get("rope_scaling"):
        # LLaMA-Factory stretches RoPE by ceil(cutoff / context); Qwen documents YaRN up to 4x its context
        max_ctx *= ROPE_SCALING_LIMIT
    if request.cutoff is not None and cutoff_override is not None and cutoff_override != request.cutoff:
        raise R1sftError(f"CUTOFF={request.cutoff} and --set cutoff_len={cutoff_override} disagree: use one")
    if request.cutoff is not None or cutoff_override is not None:
        cutoff = request.cutoff if request.cutoff is not None else cutoff_override
        if isinstance(cutoff, bool) or not isinstance(cutoff, int) or cutoff < 1:
            raise R1sftError(f"cutoff_len={cutoff}: expected a positive whole number of tokens")
        if max_ctx and cutoff > max_ctx:
            raise R1sftError(f"CUTOFF={cutoff} exceeds {preset.name}'s context window of {max_ctx} tokens"
                             + ("" if inputs.passthrough.get("rope_scaling") else
                                " (longer needs RoPE scaling: --set rope_scaling=yarn, up to "
                                f"{ROPE_SCALING_LIMIT}x)"))
        notes.why["cutoff_len"] = "set on the command line; longer samples are truncated, losing their end and EOS"
        return cutoff
    cutoff = int(inputs.defaults["cutoff"])
    if max_ctx and cutoff > max_ctx:
        notes.why["cutoff_len"] = f"capped at {preset.name}'s context window"
        return max_ctx
    notes.why["cutoff_len"] = "longer samples are truncated (their end and EOS lost): drop them at conversion"
    return cutoff


def _global_batch(inputs: Inputs) -> int:
    request, world = inputs.request, inputs.world
    global_batch = int(request.global_batch if request.global_batch is not None else inputs.defaults["global_batch"])
    if global_batch < 1:
        raise R1sftError(f"GLOBAL_BATCH={global_batch}: expected a positive number of samples")
    if global_batch % world:
        lower, upper = global_batch // world * world, (global_batch // world + 1) * world
        near = f"{lower} or {upper}" if lower else f"{upper} or {upper + world}"  # the nearest multiples, never 0
        raise R1sftError(
            f"GLOBAL_BATCH={global_batch} cannot be split over {inputs.ranks} = {world} ranks: per-device batch x "
            f"gradient accumulation x {world} must equal {global_batch} exactly; use a multiple of {world} "
            f"(e.g. {near})"
        )
    return global_batch


def _check_fixed_batch(inputs: Inputs) -> None:
    """``--set`` per-device batch and accumulation: whole numbers that multiply out to the global batch."""
    fixed_pdb, fixed_ga, world = inputs.fixed_per_device, inputs.fixed_grad_accum, inputs.world
    for key, value in (("per_device_train_batch_size", fixed_pdb), ("gradient_accumulation_steps", fixed_ga)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise R1sftError(f"--set {key}={value}: expected a whole number of at least 1")
    split = inputs.sequence_parallel
    if fixed_ga is not None and fixed_ga % split:
        raise R1sftError(f"--set gradient_accumulation_steps={fixed_ga}: with --sequence-parallel {split} it counts "
                         f"the {split} shards of every batch: use a multiple of {split}")
    rounds = None if fixed_ga is None else fixed_ga // split  # loader batches per step on each rank
    if fixed_pdb is not None and rounds is not None and fixed_pdb * rounds * world != inputs.global_batch:
        ranks = f"{inputs.data_parallel} data-parallel ranks" if split > 1 else f"{world} ranks"
        raise R1sftError(
            f"per_device_train_batch_size {fixed_pdb} x gradient_accumulation_steps {fixed_ga} x {ranks} = "
            f"{fixed_pdb * fixed_ga * inputs.data_parallel}, not the global batch {inputs.global_batch}"
        )
    for key, value in (("gradient_accumulation_steps", rounds), ("per_device_train_batch_size", fixed_pdb)):
        if value is not None and inputs.per_rank % value:
            raise R1sftError(
                f"{key} {value} does not divide {inputs.global_batch} / {world} ranks = {inputs.per_rank}")
    if inputs.request.packing and (fixed_pdb is not None or fixed_ga is not None):
        raise R1sftError("--packing plans the per-device batch (1 pack) and the accumulation (packs per step) "
                         "itself: drop per_device_train_batch_size / gradient_accumulation_steps from --set")


def deepspeed_from_path(value: str) -> str:
    match = re.fullmatch(r"(?:.*/)?ds_configs/(z0|z2|z3|z3_offload)\.json", str(value))  # relative or absolute
    if not match:
        raise R1sftError(f"--set deepspeed={value}: use --deepspeed {{{','.join(DEEPSPEED_CHOICES)}}}")
    return match.group(1)


def _deepspeed(inputs: Inputs, ds_override: Any) -> str:
    ds_request = inputs.request.deepspeed if ds_override is None else deepspeed_from_path(ds_override)
    if ds_request not in DEEPSPEED_CHOICES:
        raise R1sftError(f"DEEPSPEED={ds_request}: choose one of {', '.join(DEEPSPEED_CHOICES)}")
    if inputs.method == "qlora" and ds_request == "z3_offload":
        raise R1sftError("DEEPSPEED=z3_offload with QLoRA: bitsandbytes 4-bit weights cannot be offloaded; use z3")
    return ds_request


# ---- --sequence-parallel: the N a request names, checked (the fit for auto: recipe.sequence) -------------------
AUTO = "auto"


def parse_sequence_parallel(value: Any) -> int | str:
    """``--sequence-parallel`` as given: a whole number of GPUs per trace, or ``auto``."""
    if value is None:
        return 1
    text = str(value).strip().lower()
    if text == AUTO:
        return AUTO
    if not text.isdigit() or int(text) < 1:
        raise R1sftError(f"--sequence-parallel {value}: expected a whole number of GPUs per trace (2, 4, 8) or auto")
    return int(text)


def split_refusal(inputs: Inputs, n: int) -> str | None:
    """Why the traces of ``inputs`` cannot be split over ``n`` ranks (None: they can)."""
    preset, gpus = inputs.preset, inputs.gpus
    if n == 1:
        return None
    if inputs.method == "qlora":
        return ("QLoRA is not served: its 4-bit weights are what it saves, splitting traces saves activations, and "
                "bitsandbytes under sharded multi-GPU training is untested here; use --method lora")
    if inputs.cpu and not preset.tiny:
        return ("a CPU recipe runs one process; splitting a trace is for GPUs (tiny presets may, on N CPU "
                "processes: r1sft's own test of it)")
    if not inputs.cpu and gpus % n:
        return f"{n} does not divide the {gpus} GPUs per node (a trace's shards exchange all-to-alls within a node)"
    problem = sequence_parallel_patch.head_problem(preset.shape.heads, preset.shape.kv_heads, n)
    return f"{problem} ({preset.name})" if problem else None


def requested_degree(inputs: Inputs) -> int:
    """The N a request names, checked (1 for ``auto``, which the fit chooses)."""
    n = parse_sequence_parallel(inputs.request.sequence_parallel)
    if n == AUTO:
        if inputs.fixed_grad_accum is not None:
            raise R1sftError("--sequence-parallel auto chooses the accumulation with N: drop --set "
                             "gradient_accumulation_steps, or name N")
        return 1
    reason = split_refusal(inputs, n)
    if reason:
        raise R1sftError(f"--sequence-parallel {n}: {reason}")
    return n


def split_candidates(inputs: Inputs) -> list[int]:
    """The N ``auto`` may choose, smallest first."""
    if inputs.cpu:
        return [1]
    return [n for n in range(1, inputs.gpus + 1) if inputs.gpus % n == 0 and split_refusal(inputs, n) is None]
