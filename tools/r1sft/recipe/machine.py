"""Can this machine run a recipe as planned: the GPUs it shows against the GPUs the recipe was planned for, and
the free host RAM against what an offloading plan keeps there.

The launcher's pre-flight asks before anything starts, and ``r1sft check --here`` on request; plain ``r1sft check``
judges a recipe for any machine (the committed 8-GPU recipes are checked on CPUs).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MAKE_LINE = re.compile(r"^#\s*\(or: (?P<command>make recipe .*)\)\s*$", re.MULTILINE)


def visible_gpu_count(environ: Mapping[str, str] | None = None, *, ask_torch: bool = True) -> int:
    """GPUs a launched process may use: CUDA_VISIBLE_DEVICES when set, else what nvidia-smi lists, else (with
    ``ask_torch``, seconds to import) what torch sees: a GPU box without nvidia-smi must not look like a CPU one."""
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    smi = shutil.which("nvidia-smi", path=env.get("PATH"))
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=False).stdout
            return sum(1 for line in out.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.TimeoutExpired):
            pass
    if not ask_torch:
        return 0
    import torch

    return torch.cuda.device_count()


def planned_gpus(config: Mapping[str, Any], header: Mapping[str, str]) -> int:
    """GPUs per node the recipe expects: its ``# r1sft:`` header's, else 1 for mixed precision without use_cpu."""
    if config.get("use_cpu"):
        return 0
    try:
        return max(0, int(header["gpus"]))
    except (KeyError, ValueError):
        return 1 if any(config.get(key) for key in ("bf16", "fp16", "pure_bf16")) else 0


def rerender(recipe_text: str, gpus: int) -> str:
    """The recipe's own ``make recipe`` line (its header's), for ``gpus`` GPUs."""
    match = MAKE_LINE.search(recipe_text)
    if not match:
        return ""
    command = match.group("command")
    return re.sub(r"\bGPUS=\d+", f"GPUS={gpus}", command) if "GPUS=" in command else f"{command} GPUS={gpus}"


def gpu_problem(config: Mapping[str, Any], header: Mapping[str, str], recipe_text: str, visible: int,
                nproc: str | None = None) -> str | None:
    """Why this machine cannot launch the recipe as planned (one line naming the fix), or None.

    ``visible``: GPUs this machine shows; ``nproc``: NPROC_PER_NODE when the user set it (their choice of process
    count is kept, and only refused beyond the GPUs there are).
    """
    planned = planned_gpus(config, header)
    if planned == 0:
        return None
    shown = f"{planned} GPU{'s' if planned > 1 else ''}"
    if visible == 0:
        command = rerender(recipe_text, 0)
        fix = (f"re-render it for the CPU: {command}" if command else
               "set use_cpu: true (and bf16: false) to train on the CPU")
        return f"planned for {shown} but this machine shows none (nvidia-smi, CUDA_VISIBLE_DEVICES): {fix}"
    if nproc is not None:
        if nproc.strip().isdigit() and int(nproc) > visible:
            return f"NPROC_PER_NODE={nproc} but this machine shows {visible} GPU{'s' if visible > 1 else ''}: " \
                   f"set NPROC_PER_NODE={visible} or less"
        return None
    if visible < planned:
        command = rerender(recipe_text, visible)
        as_is = f"NPROC_PER_NODE={visible} runs it as it is, with fewer samples per step"
        fix = f"re-render it for them: {command} (or {as_is})" if command else as_is
        return f"planned for {shown} but this machine shows {visible}: {fix}"
    return None


def available_ram_gib(meminfo: str | None = None) -> float | None:
    """MemAvailable of /proc/meminfo in GiB (None where there is none: not Linux)."""
    try:
        text = meminfo if meminfo is not None else Path("/proc/meminfo").read_text(encoding="ascii")
    except OSError:
        return None
    match = re.search(r"^MemAvailable:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) / 1024**2 if match else None


def host_ram_problem(header: Mapping[str, str], available_gib: float | None) -> str | None:
    """A warning when the recipe's plan needs more host RAM (``host_ram_gib``: offloaded checkpoints or ZeRO-3
    offload per node, and a one-GPU run's own process, ``recipe.memory.host_ram_needed``) than this machine has
    free: pinned allocations beyond it fail mid-run."""
    try:
        need = float(header["host_ram_gib"])
    except (KeyError, ValueError):
        return None
    if available_gib is None or need <= available_gib:
        return None
    return (f"the plan needs ~{need:.0f} GiB of host RAM per node (the recipe's offload and, on one GPU, the "
            f"training process) but this machine has {available_gib:.0f} GiB available: free memory, or re-render "
            f"for more GPUs or a shorter cutoff")
