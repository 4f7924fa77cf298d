"""``--sequence-parallel N|auto``: each trace split over N GPUs of a node (r1sft.patches.sequence_parallel).

The planner's side: which N a request may use (the GPUs per node and the attention heads, DeepSpeed's rule), the
fit with N (each GPU holds 1/N of every trace's activations; data-parallel size = GPUs / N; accumulation counts
the N shards of every loader batch), and for ``auto`` the smallest N whose plan fits. LLaMA-Factory's parser
refuses unknown keys, so N is not a recipe key: the recipe's ``# r1sft:`` line carries ``sequence_parallel=N``
and ``r1sft train`` turns it into ``R1SFT_SEQUENCE_PARALLEL=N`` for every process it starts.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from r1sft.errors import R1sftError
from r1sft.patches import sequence_parallel as patch
from r1sft.recipe.fit import HEADROOM, Fit, fit, fmt_gib
from r1sft.recipe.memory import GIB
from r1sft.recipe.request import Inputs, Notes

AUTO = "auto"


def parse(value: Any) -> int | str:
    """``--sequence-parallel`` as given: a whole number of GPUs per trace, or ``auto``."""
    if value is None:
        return 1
    text = str(value).strip().lower()
    if text == AUTO:
        return AUTO
    if not text.isdigit() or int(text) < 1:
        raise R1sftError(f"--sequence-parallel {value}: expected a whole number of GPUs per trace (2, 4, 8) or auto")
    return int(text)


def refusal(inputs: Inputs, n: int) -> str | None:
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
    problem = patch.head_problem(preset.shape.heads, preset.shape.kv_heads, n)
    return f"{problem} ({preset.name})" if problem else None


def requested_degree(inputs: Inputs) -> int:
    """The N a request names, checked (1 for ``auto``, which the fit chooses)."""
    n = parse(inputs.request.sequence_parallel)
    if n == AUTO:
        if inputs.fixed_grad_accum is not None:
            raise R1sftError("--sequence-parallel auto chooses the accumulation with N: drop --set "
                             "gradient_accumulation_steps, or name N")
        return 1
    reason = refusal(inputs, n)
    if reason:
        raise R1sftError(f"--sequence-parallel {n}: {reason}")
    return n


def candidates(inputs: Inputs) -> list[int]:
    """The N ``auto`` may choose, smallest first."""
    if inputs.cpu:
        return [1]
    return [n for n in range(1, inputs.gpus + 1) if inputs.gpus % n == 0 and refusal(inputs, n) is None]


def fit_split(inputs: Inputs, notes: Notes, data_dir: Path) -> Fit:
    """:func:`fit` with the request's N, or for ``auto`` with the smallest N whose plan fits the GPUs
    (``inputs.sequence_parallel`` and ``notes`` are left as that plan's). A plan that offloads to host RAM counts
    only when no split fits without: ZeRO-3 offload runs the optimizer step on the CPU, several times slower than
    the two all-to-alls per layer a split costs."""
    if parse(inputs.request.sequence_parallel) != AUTO:
        chosen = fit(inputs, notes, data_dir)
        _reason(inputs, notes, chosen, None)
        return chosen
    budget = inputs.gpu_mem * GIB * HEADROOM
    tried: list[tuple[int, str]] = []
    fitting: list[tuple[int, Fit, Notes]] = []
    for n in candidates(inputs):
        inputs.sequence_parallel = n
        trial = copy.deepcopy(notes)
        try:
            chosen = fit(inputs, trial, data_dir)
        except R1sftError as exc:
            needs = re.search(r"~[\d.]+ GiB", str(exc))
            tried.append((n, f"{needs.group(0) if needs else 'more than the budget'} per GPU"))
            continue
        if chosen.memory.peak > budget:
            tried.append((n, f"~{fmt_gib(chosen.memory.peak)} per GPU"))
            continue
        fitting.append((n, chosen, trial))
        if not chosen.memory.host:
            break
        tried.append((n, f"host RAM for ZeRO-3 offload ({fmt_gib(chosen.memory.host)} per node)"))
    if not fitting:
        largest, why = tried[-1]
        raise R1sftError(f"--sequence-parallel auto: no split of each trace over up to {largest} of the "
                         f"{inputs.gpus} GPUs fits (N={largest} needs {why}): use more GPUs per node or a shorter "
                         "--cutoff")
    n, chosen, trial = next((f for f in fitting if not f[1].memory.host), fitting[0])
    inputs.sequence_parallel = n
    _copy_notes(trial, notes)
    _reason(inputs, notes, chosen, [t for t in tried if t[0] < n])
    return chosen


def _copy_notes(source: Notes, target: Notes) -> None:
    for name in ("why", "reasons", "header", "warnings"):
        setattr(target, name, getattr(source, name))


def _reason(inputs: Inputs, notes: Notes, chosen: Fit, tried: list[tuple[int, str]] | None) -> None:
    n = inputs.sequence_parallel
    if n == 1:
        if tried is not None:
            notes.reason("--sequence-parallel auto: whole traces fit each GPU (no split)")
        return
    groups = inputs.world // n
    where = f"{n} CPU processes (r1sft's test path)" if inputs.cpu else f"{n} GPUs of a node"
    why = f"each trace split over {where} by DeepSpeed Ulysses (r1sft train sets R1SFT_SEQUENCE_PARALLEL={n}; " \
          f"plain llamafactory-cli train would not split it); data-parallel size {inputs.world} / {n} = {groups}"
    if tried:
        smaller = ", ".join(f"N={m} needs {text}" for m, text in tried)
        why += f"; the smallest N that fits ({smaller})"
    notes.reason(f"sequence parallelism: {why}")


def refuse_config(train: dict[str, Any], n: int) -> None:
    """The keys of the planned recipe (``--set`` included) that cannot run split."""
    problems = patch.config_problems(train, n) if n > 1 else []
    if problems:
        raise R1sftError(f"--sequence-parallel {n}: {problems[0]}")
