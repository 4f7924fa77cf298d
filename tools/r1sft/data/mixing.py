"""Mixing several converted datasets in one training run, the LLaMA-Factory way.

LLaMA-Factory mixes at load time: ``dataset: a,b`` with ``mix_strategy: interleave_under`` samples each example
from dataset i with probability ``interleave_probs[i]`` and stops when the first dataset runs out (``interleave_over``
oversamples until the last one does; ``concat`` appends). ``mix_recipe_keys`` writes those keys for a recipe. To
materialise one file instead, convert each source, then ``r1sft convert sharegpt --input a.jsonl --input b.jsonl``.
"""

from __future__ import annotations

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
