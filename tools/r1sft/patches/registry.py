"""The start-up patches ``r1sft train`` installs, registered in one place (as ``data.sources.SOURCES`` registers
datasets).

A patch replaces one function of LLaMA-Factory's stack (transformers, PEFT, liger) with a faster one that computes
the same thing, or (``rope_scaling``) with one that works where LLaMA-Factory's fails on its own pinned stack. Each
is one module of this package that declares, next to how it works:

- ``ENV_VAR``: the variable that switches it on in the launched processes; ``ANNOUNCEMENT``: the line printed when
  it is installed; ``FALLBACK``: what runs instead when it is not;
- ``wanted(config, environ, plan) -> str | None``: why a run of the training ``config`` needs it (None: it does
  not), given the launch's ``environ`` and ``LaunchPlan``;
- ``on_value(plan) -> str``: the value of ``ENV_VAR`` that switches it on;
- ``enabled_by_env(environ)``, ``install() -> bool``, ``report()`` (one line at exit), ``uninstall()`` (tests).

The launcher sets the variable of every wanted patch (``switches``; a value already in the environment, such as
``off`` or ``0``, wins) and puts ``site/`` first on PYTHONPATH, whose ``sitecustomize.py`` calls
``install_from_env()`` in every process torchrun starts. Off, or not installable, a patch leaves LLaMA-Factory's own
behaviour: slower, never different in what is trained (``rope_scaling`` off: LLaMA-Factory's error). Adding a
patch is one module and one line in ``PATCHES``.
"""

from __future__ import annotations

import atexit
import importlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

# In installation order.
# tiled_mlp after fused_lora: it wraps the MLP forward fused_lora installs, so each tile runs fused.
PATCHES = ("rope_scaling", "packed_attention", "liger_chunking", "lora_input_cast", "fused_lora", "tiled_mlp",
           "offloaded_checkpointing", "partial_checkpointing", "sequence_parallel")
SITE_DIR = Path(__file__).resolve().parent / "site"  # its sitecustomize.py runs install_from_env()


@dataclass(frozen=True)
class LaunchPlan:
    """What the launcher worked out for a launch beyond its config."""

    uncheckpointed_layers: int = 0  # layers the memory model lets keep their activations (recipe.fit)
    sequence_parallel: int = 1  # ranks each trace is split over (the recipe's --sequence-parallel)
    mlp_tile_tokens: int = 0  # tokens per MLP tile the plan needs (the recipe header's tiled_mlp=; 0: untiled)


def patch_modules() -> list[ModuleType]:
    return [importlib.import_module(f"r1sft.patches.{name}") for name in PATCHES]


def wanted(config: Mapping, environ: Mapping[str, str], plan: LaunchPlan) -> dict[str, str]:
    """Patch name -> why a run of ``config`` needs it."""
    reasons = {}
    for name, module in zip(PATCHES, patch_modules(), strict=True):
        reason = module.wanted(config, environ, plan)
        if reason:
            reasons[name] = reason
    return reasons


def switches(config: Mapping, environ: Mapping[str, str], plan: LaunchPlan) -> dict[str, str]:
    """The environment variables that switch on the patches a run of ``config`` needs."""
    modules = dict(zip(PATCHES, patch_modules(), strict=True))
    return {modules[name].ENV_VAR: environ.get(modules[name].ENV_VAR, modules[name].on_value(plan))
            for name in wanted(config, environ, plan)}


def any_enabled(environ: Mapping[str, str]) -> bool:
    return any(module.enabled_by_env(environ) for module in patch_modules())


def install_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """Install every patch its environment variable turns on; a failure is printed, never raised."""
    installed = []
    for name in PATCHES:
        module = None
        try:
            module = importlib.import_module(f"r1sft.patches.{name}")
            if module.enabled_by_env(environ) and module.install():
                atexit.register(module.report)
                installed.append(name)
                print(f"r1sft: {module.ANNOUNCEMENT} (pid {os.getpid()})", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - a start-up patch must never stop the interpreter
            print(f"r1sft: {name} not installed ({exc}); {getattr(module, 'FALLBACK', 'LLaMA-Factory runs')}", file=sys.stderr)
    return installed
