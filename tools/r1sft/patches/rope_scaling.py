"""RoPE scaling (``rope_scaling: yarn``, a cutoff past the model's context) that loads under transformers 5.

LLaMA-Factory's ``configure_rope`` (``llamafactory/model/model_utils/rope.py``) computes the scaling factor as a
float (``float(math.ceil(cutoff / context))``) and sets ``config.max_position_embeddings = context * factor``:
81920.0 for Qwen2.5-7B at a 65,536-token cutoff. transformers 5's configs are huggingface_hub strict dataclasses
whose ``max_position_embeddings`` is an ``int``, so that assignment raises ``StrictDataclassFieldValidationError``
and every run with ``rope_scaling`` dies while loading the model (seen on the GPU machine:
``docs/bench/h200-2026-12-04/7b-lora-64k-rope-error.md``). ``install()`` wraps ``configure_rope`` so that, while it
runs, a whole-number float given to ``max_position_embeddings`` is stored as that int, and afterwards puts back the
``rope_theta`` (and any other key) that transformers 5 keeps in the ``rope_parameters`` dict LLaMA-Factory's new
``rope_scaling`` dict replaces; the factor, the scaling type and everything else stay LLaMA-Factory's.

It wraps the function when LLaMA-Factory's rope module is imported (an import hook: installing it imports nothing),
so ``model/patcher.py``'s ``from .model_utils.rope import configure_rope`` binds the wrapped one. ``r1sft train``
turns it on for every recipe with ``rope_scaling`` (``R1SFT_ROPE_SCALING=int``); ``R1SFT_ROPE_SCALING=off`` keeps
LLaMA-Factory's function.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from r1sft.patches import on_import

if TYPE_CHECKING:
    from r1sft.patches.registry import LaunchPlan

ENV_VAR = "R1SFT_ROPE_SCALING"
ANNOUNCEMENT = "RoPE scaling stores max_position_embeddings as an int"
FALLBACK = "LLaMA-Factory's configure_rope (a float max_position_embeddings, refused by transformers 5)"
ROPE_MODULE = "llamafactory.model.model_utils.rope"

_state: dict[str, Any] = {"finder": None, "module": None, "original": None, "fixed": 0}


def enabled_by_env(environ: Mapping[str, str] | None = None) -> bool:
    return (os.environ if environ is None else environ).get(ENV_VAR, "").strip().lower() == "int"


def wanted(config: Mapping[str, Any], environ: Mapping[str, str], plan: LaunchPlan) -> str | None:
    if config.get("rope_scaling"):
        return "rope_scaling: LLaMA-Factory writes a float context length that transformers 5 refuses"
    return None


def on_value(plan: LaunchPlan) -> str:
    return "int"


class _IntPositions:
    """While active, ``type(config).max_position_embeddings = 81920.0`` stores 81920."""

    def __init__(self, config: Any) -> None:
        self.cls = type(config)
        self.own = "__setattr__" in vars(self.cls)
        self.setattr = self.cls.__setattr__

    def __enter__(self) -> None:
        setattr_ = self.setattr

        def setattr_int_positions(obj, name, value):
            if name == "max_position_embeddings" and isinstance(value, float) and value.is_integer():
                _state["fixed"] += 1
                value = int(value)
            setattr_(obj, name, value)

        self.cls.__setattr__ = setattr_int_positions

    def __exit__(self, *exc: object) -> None:
        if self.own:
            self.cls.__setattr__ = self.setattr
        else:
            del self.cls.__setattr__


def wrap(module: Any) -> None:
    """Replace ``module.configure_rope`` (LLaMA-Factory's rope module) with the int-keeping one (idempotent)."""
    if _state["original"] is not None:
        return
    original = module.configure_rope

    @functools.wraps(original)
    def configure_rope(config, model_args):
        before = dict(getattr(config, "rope_parameters", None) or {})
        with _IntPositions(config):
            original(config, model_args)
        keep_rope_theta(config, before)

    _state.update(module=module, original=original)
    module.configure_rope = configure_rope


def keep_rope_theta(config: Any, before: Mapping[str, Any]) -> None:
    """transformers 5 keeps ``rope_theta`` inside ``rope_parameters``, which ``rope_scaling`` now aliases: the dict
    LLaMA-Factory sets (type, factor, original context) replaces it, and YaRN's frequencies then fail on a ``None``
    base. Put back what the model had and the new dict lacks."""
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, dict):
        missing = {key: value for key, value in before.items() if key not in params}
        if missing:
            config.rope_parameters = {**params, **missing}


def install() -> bool:
    if ROPE_MODULE in sys.modules:
        wrap(sys.modules[ROPE_MODULE])
        patcher = sys.modules.get("llamafactory.model.patcher")
        if patcher is not None and _state["original"] is getattr(patcher, "configure_rope", None):
            patcher.configure_rope = sys.modules[ROPE_MODULE].configure_rope
    elif _state["finder"] is None:
        _state["finder"] = on_import.when_imported(ROPE_MODULE, wrap)
    return True


def report() -> None:
    if _state["fixed"]:
        print(f"r1sft: RoPE scaling: max_position_embeddings stored as an int ({_state['fixed']}x)", file=sys.stderr)


def uninstall() -> None:
    """Take the import hook out and give LLaMA-Factory its function back (for tests)."""
    on_import.remove(_state["finder"])
    if _state["original"] is not None:
        _state["module"].configure_rope = _state["original"]
        patcher = sys.modules.get("llamafactory.model.patcher")
        if patcher is not None:
            patcher.configure_rope = _state["original"]
    _state.update(finder=None, module=None, original=None, fixed=0)
