"""The command that re-creates a recipe, as ``r1sft recipe`` and as ``make recipe`` (written in its header)."""

from __future__ import annotations

import re
from typing import Any

from r1sft.recipe.request import RecipeRequest

# RecipeRequest field -> (r1sft recipe flag, make variable)
OPTIONS = {
    "nodes": ("--nodes", "NODES"),
    "gpu_mem": ("--gpu-mem", "GPU_MEM"),
    "cutoff": ("--cutoff", "CUTOFF"),
    "global_batch": ("--global-batch", "GLOBAL_BATCH"),
    "think": ("--think", "THINK"),
    "template": ("--template", "TEMPLATE"),
    "model_path": ("--model-path", "MODEL_PATH"),
    "sequence_parallel": ("--sequence-parallel", "SP"),
}


def commands(request: RecipeRequest, preset: str, method: str, gpus: int) -> tuple[str, str]:
    """The canonical ``r1sft recipe`` command for this request, and its ``make recipe`` twin."""
    cli = [f"r1sft recipe {preset}", f"--method {method}", f"--gpus {gpus}"]
    make = [f"make recipe MODEL={preset}", f"METHOD={method}", f"GPUS={gpus}"]
    if request.datasets:
        cli.append(f"--dataset {','.join(request.datasets)}")
        make.append(f"DATASET={','.join(request.datasets)}")
    for attr, (flag, var) in OPTIONS.items():
        value = getattr(request, attr)
        if value is not None:
            shown = set_text(value)
            cli.append(f"{flag} {shown}")
            make.append(f"{var}={shown}")
    if request.deepspeed != "auto":
        cli.append(f"--deepspeed {request.deepspeed}")
        make.append(f"DEEPSPEED={request.deepspeed}")
    if request.packing:
        cli.append("--packing")
        make.append("PACKING=1")
    if request.overrides:
        pairs = [f"{key}={set_text(value)}" for key, value in request.overrides.items()]
        cli += [f"--set {pair}" for pair in pairs]
        make.append(f'SET="{" ".join(pairs)}"')
    return " ".join(cli), " ".join(make)


def set_text(value: Any) -> str:
    """A value as the command line writes it (``2e-5``, ``true``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return re.sub(r"e([-+])0*(\d)", r"e\1\2", f"{value:g}").replace("e+", "e")  # 2e-05 -> 2e-5
    return str(value)
