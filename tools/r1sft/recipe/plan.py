"""From a request (model, method, hardware, data) to every value of the training and merge recipes.

The jobs, one module each: :mod:`.request` checks the request and splits ``--set`` into planner inputs and
pass-through keys; :mod:`.fit` searches the smallest machinery that fits (DeepSpeed, checkpointing, batch) with
:mod:`.memory`'s estimate; :mod:`.values` builds the train and merge keys; :mod:`.commands` re-creates the command.
Each choice comes with a one-line reason. Rendering (:mod:`.render`) only lays the values out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1sft import paths
from r1sft.presets import ADAPTER_METHODS, Preset
from r1sft.recipe.commands import commands
from r1sft.recipe.exports import base_generation_config, plain_export_gaps
from r1sft.recipe.fit import METHOD_NAMES, partial_checkpointing
from r1sft.recipe.memory import GIB, MemoryEstimate
from r1sft.recipe.request import Inputs, Notes, RecipeRequest, read_request
from r1sft.recipe.sequence import fit_split, refuse_config
from r1sft.recipe.values import MERGE_WHY, merge_values, train_values


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
    sequence_parallel: int  # ranks each trace is split over (1: none; r1sft.patches.sequence_parallel)
    mlp_tile_tokens: int  # tokens per MLP tile under r1sft train (0: none; r1sft.patches.tiled_mlp)
    train: dict[str, Any]
    extra_keys: list[str]  # --set keys the templates do not place: rendered at the end of their section
    merge: dict[str, Any] | None
    merge_why: dict[str, str]
    why: dict[str, str]
    reasons: list[str]
    header_reasons: list[str]  # the reasons no key's comment carries
    warnings: list[str]
    command: str
    make_command: str
    sft_path: Path
    merge_path: Path | None
    export_gaps: list[str]  # why plain llamafactory-cli export would not match training (then: r1sft merge)
    generation_config: dict[str, Any] | None = None  # written beside the recipe (a base model's full SFT)
    inputs: Inputs | None = None  # the checked request the plan was made from

    @property
    def generation_config_path(self) -> Path:
        return self.sft_path.with_name("generation_config.json")

    @property
    def merge_command(self) -> str | None:
        """How to merge: plain export where it matches training, else r1sft merge."""
        if self.merge_path is None:
            return None
        from r1sft.recipe.request import display

        tool = "r1sft merge" if self.export_gaps else "llamafactory-cli export"
        return f"{tool} {display(self.merge_path).as_posix()}"

    @property
    def world(self) -> int:
        return self.inputs.world

    @property
    def data_parallel(self) -> int:
        return self.inputs.data_parallel

    @property
    def is_adapter(self) -> bool:
        return self.method in ADAPTER_METHODS

    @property
    def hardware(self) -> str:
        if self.cpu:
            return f"CPU ({self.world} processes, each trace split over them)" if self.sequence_parallel > 1 else "CPU"
        node = f" x {self.nodes} nodes" if self.nodes > 1 else ""
        split = f", each trace split over {self.sequence_parallel}" if self.sequence_parallel > 1 else ""
        return f"{self.gpus} GPU{'s' if self.gpus > 1 else ''}{node} ({self.gpu_mem:g} GiB each){split}"

    @property
    def memory_line(self) -> str:
        where = "process (CPU)" if self.cpu else "GPU"
        line = f"~{self.memory.peak_gib:.1f} GiB per {where} at the {self.memory.phase} = {self.memory.breakdown()}"
        if self.memory.host:
            line += f"; host RAM for offload ~{self.memory.host / GIB:.0f} GiB per node"
        return line

    @property
    def batch_line(self) -> str:
        line = f"{self.per_device} per device x GA {self.grad_accum} x {self.data_parallel}"
        if self.sequence_parallel > 1:
            line += f" data-parallel ({self.world} / {self.sequence_parallel} per trace)"
        if self.samples_per_pack is None:
            return f"{line} = {self.global_batch}"
        packs = self.per_device * self.grad_accum * self.data_parallel
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


def plan_recipe(request: RecipeRequest, *, data_dir: Path | None = None, build_tiny: bool = True) -> Plan:
    """Decide every value of the recipe for ``request``. Raises R1sftError for requests that cannot work."""
    data_dir = data_dir or paths.DATA_DIR
    notes = Notes()
    inputs = read_request(request, notes, data_dir, build_tiny)
    chosen = fit_split(inputs, notes, data_dir)
    train, extra_keys = train_values(inputs, chosen, notes, data_dir)
    refuse_config(train, inputs.sequence_parallel)
    kept = partial_checkpointing(inputs, notes, chosen, train)
    merge = merge_values(inputs, train)
    preset, method = inputs.preset, inputs.method
    out_dir = (request.out_dir or paths.RECIPES_DIR) / preset.name
    generation = _base_generation(inputs, train, notes, out_dir)
    if preset.note:
        notes.reason(preset.note)
    gaps = plain_export_gaps(merge, paths.REPO_ROOT) if merge else []
    command, make_command = commands(request, preset.name, method, inputs.gpus)
    return Plan(
        request=request, preset=preset, method=method, model_path=inputs.model_path, template=inputs.template,
        datasets=inputs.datasets, special_tokens=inputs.special_tokens, cpu=inputs.cpu, gpus=inputs.gpus,
        nodes=inputs.nodes, gpu_mem=inputs.gpu_mem, cutoff=inputs.cutoff, global_batch=inputs.global_batch,
        per_device=chosen.per_device, grad_accum=chosen.grad_accum, deepspeed=chosen.deepspeed,
        gradient_checkpointing=chosen.gradient_checkpointing, liger=chosen.liger, memory=chosen.memory,
        samples_per_pack=chosen.samples_per_pack, uncheckpointed_layers=kept,
        sequence_parallel=inputs.sequence_parallel, mlp_tile_tokens=chosen.mlp_tile_tokens,
        train=train, extra_keys=extra_keys,
        merge=merge, merge_why=MERGE_WHY, why=notes.why, reasons=notes.reasons, header_reasons=notes.header,
        warnings=notes.warnings, command=command, make_command=make_command,
        sft_path=out_dir / f"{method}_sft.yaml", merge_path=out_dir / f"{method}_merge.yaml" if merge else None,
        export_gaps=gaps, generation_config=generation, inputs=inputs,
    )


def _base_generation(inputs, train: dict[str, Any], notes: Notes, out_dir: Path) -> dict[str, Any] | None:
    """A base checkpoint's full SFT saves the generation config written beside the recipe (r1sft.generation)."""
    preset = inputs.preset
    if not preset.base:
        return None
    eot = preset.family.end_of_turn
    notes.reason(f"base checkpoint: its tokenizer ends text with <|endoftext|>; the {train['template']} template makes "
                 f"{eot} the EOS for training, and " + ("the saved generation_config.json lists it" if
                 inputs.method == "full" else "r1sft merge writes it into the merged model's generation_config.json"))
    if inputs.method != "full" or "generation_config" in train:
        return None
    from r1sft.recipe.request import display

    config = base_generation_config(preset, inputs.model_path, paths.REPO_ROOT)
    train["generation_config"] = display(out_dir / "generation_config.json").as_posix()
    notes.why["generation_config"] = (f"base model: saved with {preset.family.end_of_turn} as EOS and "
                                      f"{preset.family.name}'s sampling defaults")
    return config
