"""The start-up hooks ``r1sft train`` turns on, in one place.

Each is a module of this package with ``ENV_VAR``, ``enabled_by_env(environ)``, ``install()`` and ``report()``. The
launcher decides which a recipe needs (``r1sft.launch.hook_switches``) and puts ``_hooks/`` first on PYTHONPATH; its
``sitecustomize.py`` calls ``install_from_env()`` in every process torchrun starts. Off, or not installable, each
leaves LLaMA-Factory's own behaviour: slower, never different in what is trained.
"""

from __future__ import annotations

import atexit
import importlib
import os
import sys
from collections.abc import Mapping
from types import ModuleType

# module -> (line printed when installed, what runs instead when it is not)
HOOKS = {
    "packed_attention": ("packed samples attend through varlen attention", "LLaMA-Factory's dense mask is used"),
    "liger_chunking": ("liger's cross-entropy in chunks of up to 1 GiB of logits", "liger's default chunks are used"),
    "lora_input_cast": ("LoRA inputs stay bf16 under autocast", "PEFT copies LoRA inputs to fp32"),
    "fused_lora": ("LoRA linears run as one autograd function", "PEFT's LoRA layer keeps dropped-out inputs"),
    "partial_checkpointing": ("the last layers run without gradient checkpointing", "every layer is checkpointed"),
}


def hook_modules() -> list[ModuleType]:
    return [importlib.import_module(f"r1sft.{name}") for name in HOOKS]


def any_enabled(environ: Mapping[str, str]) -> bool:
    return any(module.enabled_by_env(environ) for module in hook_modules())


def install_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """Install every hook its environment variable turns on; a failure is printed, never raised."""
    installed = []
    for name, (announcement, fallback) in HOOKS.items():
        try:
            module = importlib.import_module(f"r1sft.{name}")
            if module.enabled_by_env(environ) and module.install():
                atexit.register(module.report)
                installed.append(name)
                print(f"r1sft: {announcement} (pid {os.getpid()})", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - a start-up hook must never stop the interpreter
            print(f"r1sft: {name} not installed ({exc}); {fallback}", file=sys.stderr)
    return installed
