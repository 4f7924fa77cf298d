"""Mixing several converted datasets in one training run, the LLaMA-Factory way.

LLaMA-Factory mixes at load time: ``dataset: a,b`` with ``mix_strategy: interleave_under`` samples each example
from dataset i with probability ``interleave_probs[i]`` and stops when the first dataset runs out (``interleave_over``
oversamples until the last one does; ``concat`` appends). ``mix_recipe_keys`` writes those keys for a recipe and
``mix_counts`` says how many rows of each dataset one pass of that mix trains on. To materialise one file instead,
convert each source, then ``r1sft convert sharegpt --input a.jsonl --input b.jsonl`` (or ``convert_many``, whose
stats count each part).
"""

from __future__ import annotations

from pathlib import Path

from r1sft.data.registry import read_dataset_info
from r1sft.errors import R1sftError

MIX_STRATEGIES = ("concat", "interleave_under", "interleave_over")


def mix_recipe_keys(weights: dict[str, float], strategy: str = "interleave_under") -> dict[str, str]:
    """``{"stratos": 3, "magpie": 1}`` -> the ``dataset``/``mix_strategy``/``interleave_probs`` recipe keys."""
    if not weights:
        raise R1sftError("mix: no datasets given")
    if strategy not in MIX_STRATEGIES:
        raise R1sftError(f"mix strategy {strategy!r}: expected one of {', '.join(MIX_STRATEGIES)}")
    if any(w <= 0 for w in weights.values()):
        raise R1sftError("mix: weights must be positive")
    keys = {"dataset": ",".join(weights), "mix_strategy": strategy}
    if strategy != "concat":
        total = sum(weights.values())
        probs = [round(w / total, 6) for w in weights.values()]
        probs[-1] = round(1 - sum(probs[:-1]), 6)  # LLaMA-Factory's sampler wants them to sum to 1
        keys["interleave_probs"] = ",".join(f"{p:g}" for p in probs)
    return keys


def mix_counts(sizes: dict[str, int], weights: dict[str, float] | None = None,
               strategy: str = "interleave_under") -> dict[str, int]:
    """Rows of each dataset in one pass of the mix: all of them for ``concat``; for interleaving (each row drawn
    from dataset i with probability p_i) the expected counts ``p_i * T``, where the pass ends after T draws when the
    first dataset runs out (``interleave_under``: T = min n_i / p_i) or the last (``interleave_over``: max, the
    others repeated)."""
    if strategy not in MIX_STRATEGIES:
        raise R1sftError(f"mix strategy {strategy!r}: expected one of {', '.join(MIX_STRATEGIES)}")
    if strategy == "concat":
        return dict(sizes)
    weights = weights or dict.fromkeys(sizes, 1)
    if set(weights) != set(sizes) or any(w <= 0 for w in weights.values()):
        raise R1sftError("mix: give a positive weight for every dataset, and a size")
    total = sum(weights.values())
    probs = {name: weights[name] / total for name in sizes}
    horizon = (min if strategy == "interleave_under" else max)(sizes[n] / probs[n] for n in sizes)
    counts = {name: round(probs[name] * horizon) for name in sizes}
    if strategy == "interleave_under":
        counts = {name: min(count, sizes[name]) for name, count in counts.items()}
    return counts


def registered_rows(dataset_dir: str | Path, names: list[str]) -> dict[str, int]:
    """The row counts ``r1sft convert`` recorded for ``names`` in ``dataset_dir/dataset_info.json``."""
    info = read_dataset_info(Path(dataset_dir))
    sizes = {}
    for name in names:
        rows = (info.get(name) or {}).get("r1sft", {}).get("rows")
        if not isinstance(rows, int):
            raise R1sftError(f"{Path(dataset_dir) / 'dataset_info.json'}: no r1sft row count for {name!r} "
                             "(convert it with r1sft convert)")
        sizes[name] = rows
    return sizes
