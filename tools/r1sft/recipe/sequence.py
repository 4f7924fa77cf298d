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
from r1sft.recipe.request import AUTO, Inputs, Notes, parse_sequence_parallel, split_candidates


def fit_split(inputs: Inputs, notes: Notes, data_dir: Path) -> Fit:
    """:func:`fit` with the request's N, or for ``auto`` with the smallest N whose plan fits the GPUs
    (``inputs.sequence_parallel`` and ``notes`` are left as that plan's). A plan that offloads to host RAM counts
    only when no split fits without: ZeRO-3 offload runs the optimizer step on the CPU, several times slower than
    the two all-to-alls per layer a split costs."""
    if parse_sequence_parallel(inputs.request.sequence_parallel) != AUTO:
        chosen = fit(inputs, notes, data_dir)
        _reason(inputs, notes, chosen, None)
        return chosen
    budget = inputs.gpu_mem * GIB * HEADROOM
    tried: list[tuple[int, str]] = []
    fitting: list[tuple[int, Fit, Notes]] = []
    for n in split_candidates(inputs):
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
