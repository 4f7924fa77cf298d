"""Which start-up patches a launch switches on, for the config as launched (edits and overrides included)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from r1sft.errors import R1sftError
from r1sft.patches import fused_lora, registry


def patch_switches(config: dict, environ: Mapping[str, str], uncheckpointed_layers: int = 0,
                   sequence_parallel: int = 1, mlp_tile_tokens: int = 0) -> dict[str, str]:
    """The environment variables that switch on the patches a run of ``config`` needs; a value already in
    ``environ`` (``off``, ``0``) wins. The launcher and the benchmark both use it. ``uncheckpointed_layers``: what
    ``planned_uncheckpointed_layers`` allows for this config; ``sequence_parallel``: ranks per trace;
    ``mlp_tile_tokens``: the MLP tiles the plan needs (0: none)."""
    return registry.switches(config, environ, registry.LaunchPlan(uncheckpointed_layers=uncheckpointed_layers,
                                                                  sequence_parallel=sequence_parallel,
                                                                  mlp_tile_tokens=mlp_tile_tokens))


def planned_uncheckpointed_layers(config: dict, header: Mapping[str, str], world: int,
                                  environ: Mapping[str, str] | None = None, sequence_parallel: int = 1) -> int:
    """Layers to leave uncheckpointed, recomputed for the config as launched from the preset and GPU memory r1sft
    planned for (``header``: the recipe's ``# r1sft:`` fields); 0 for recipes r1sft did not plan."""
    if not header.get("preset") or config.get("disable_gradient_checkpointing") or config.get("use_cpu"):
        return 0
    from r1sft.presets import get_preset, with_local_shape
    from r1sft.recipe.fit import uncheckpointed_layers

    try:
        preset = get_preset(header["preset"])
        model = str(config.get("model_name_or_path", ""))
        folder = Path(model)
        if folder.is_dir():
            preset = with_local_shape(preset, folder)
        elif model.lower() != (preset.hub_id or "").lower():  # another model than planned: its shape is unknown here
            print(f"r1sft: every layer checkpointed ({model} is not {preset.name}'s model: re-render the recipe "
                  "with --model-path to plan for it)", file=sys.stderr)
            return 0
        return uncheckpointed_layers(config, preset, float(header.get("gpu_mem", 80)), world,
                                     fused=fused_lora.applies_to(config, environ or {}),
                                     sequence_parallel=sequence_parallel)
    except (R1sftError, ValueError, KeyError, TypeError) as exc:
        print(f"r1sft: every layer checkpointed ({exc})", file=sys.stderr)
        return 0
