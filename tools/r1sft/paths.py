"""Where r1sft's files live.

Recipes use paths relative to the project root (``data``, ``ds_configs/z3.json``, ``saves/...``) the way
LLaMA-Factory's own examples do, and ``run_sft.sh`` launches from that root. ``R1SFT_HOME`` points r1sft at another
checkout (for example when the package is installed without ``-e``).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = Path(os.environ.get("R1SFT_HOME") or PACKAGE_DIR.parents[1]).resolve()
DATA_DIR = REPO_ROOT / "data"
SAMPLES_DIR = DATA_DIR / "samples"
TEMPLATES_DIR = REPO_ROOT / "templates"
RECIPES_DIR = REPO_ROOT / "recipes"
DS_CONFIGS_DIR = REPO_ROOT / "ds_configs"
SAVES_DIR = REPO_ROOT / "saves"
CACHE_DIR = Path(os.environ.get("R1SFT_CACHE") or REPO_ROOT / ".cache").resolve()
TINY_MODELS_DIR = CACHE_DIR / "tiny-models"
