"""Values that would do nothing: a key whose effect another value of the recipe switches off.

An override (``run_sft.sh RECIPE key=value``, ``--set``) that only works with another setting switches that setting
on when there is one sensible value, and says so: ``save_steps`` -> ``save_strategy: steps``, ``eval_steps`` ->
``eval_strategy: steps`` (with evaluation data), ``use_unsloth_gc`` (offloaded checkpointing) -> checkpointing on. One that another value cancels is refused with the fix:
``num_train_epochs`` under the recipe's ``max_steps``, ``eval_steps`` without evaluation data, ``save_total_limit``
when nothing is saved. ``cancelled`` finds the same contradictions written into a recipe file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from r1sft.errors import R1sftError

# transformers' defaults, for recipes that leave the key out
DEFAULT_STRATEGY = {"save_strategy": "steps", "eval_strategy": "no"}


def strategy(config: Mapping[str, Any], key: str) -> str:
    """``save_strategy`` / ``eval_strategy`` as transformers reads it (YAML's bare ``no`` is False)."""
    value = config.get(key, DEFAULT_STRATEGY[key])
    return "no" if value is False or value is None else str(value).strip().lower()


def _has_eval_data(config: Mapping[str, Any]) -> bool:
    val_size = config.get("val_size") or 0
    return bool(config.get("eval_dataset")) or (isinstance(val_size, (int, float)) and val_size > 0)


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def implied(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The values ``overrides`` imply on top of ``config`` (the recipe before them), with one note each.

    Raises R1sftError, naming the fix, for an override that would have no effect.
    """
    extra: dict[str, Any] = {}
    notes: list[str] = []
    for steps_key, strategy_key in (("save_steps", "save_strategy"), ("eval_steps", "eval_strategy")):
        if steps_key not in overrides or strategy_key in overrides or strategy(config, strategy_key) == "steps":
            continue
        if steps_key == "eval_steps" and not _has_eval_data({**config, **overrides}):
            raise R1sftError(f"eval_steps={overrides[steps_key]} has no effect: the recipe holds no evaluation data; "
                             "add val_size=0.05 (or eval_dataset=NAME) to evaluate every "
                             f"{overrides[steps_key]} steps")
        extra[strategy_key] = "steps"
        notes.append(f"{steps_key}={overrides[steps_key]} implies {strategy_key}: steps "
                     f"(the recipe had \"{strategy(config, strategy_key)}\")")
    if (overrides.get("use_unsloth_gc") is True and "disable_gradient_checkpointing" not in overrides
            and config.get("disable_gradient_checkpointing")):
        extra["disable_gradient_checkpointing"] = False
        notes.append("use_unsloth_gc=true implies disable_gradient_checkpointing: false (it offloads the "
                     "checkpoints; the recipe had checkpointing off)")
    if ("num_train_epochs" in overrides and "max_steps" not in overrides and _positive(config.get("max_steps"))):
        raise R1sftError(f"num_train_epochs={overrides['num_train_epochs']} has no effect: the recipe's max_steps: "
                         f"{config['max_steps']} ends training first; add max_steps=-1 to train by epochs")
    if "save_total_limit" in overrides and strategy({**config, **overrides, **extra}, "save_strategy") == "no":
        raise R1sftError(f"save_total_limit={overrides['save_total_limit']} has no effect: the recipe saves no "
                         "checkpoints (save_strategy: no); add save_steps=N to save every N steps")
    return extra, notes


def cancelled(config: Mapping[str, Any]) -> list[str]:
    """Keys of a recipe that another of its values switches off, each with the fix."""
    problems = []
    if "save_steps" in config and strategy(config, "save_strategy") == "no":
        problems.append(f"save_steps {config['save_steps']} has no effect with save_strategy: \"no\" (nothing is "
                        "saved, so an interrupted run starts over): set save_strategy: steps, or remove save_steps")
    if "eval_steps" in config and config.get("eval_steps") is not None and strategy(config, "eval_strategy") != "steps":
        problems.append(f"eval_steps {config['eval_steps']} has no effect with eval_strategy: "
                        f"\"{strategy(config, 'eval_strategy')}\": set eval_strategy: steps (with val_size or "
                        "eval_dataset), or remove eval_steps")
    if config.get("use_unsloth_gc") is True and config.get("disable_gradient_checkpointing"):
        problems.append("use_unsloth_gc has no effect with disable_gradient_checkpointing: true (it offloads the "
                        "checkpoints of checkpointing): set disable_gradient_checkpointing: false, or remove "
                        "use_unsloth_gc")
    return problems
