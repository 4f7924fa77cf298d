"""Checkpoints in an output folder, and paths as recipes write them (relative to the project root)."""

from __future__ import annotations

import re
from pathlib import Path

from r1sft.paths import REPO_ROOT

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def newest_checkpoint(output_dir: Path) -> Path | None:
    """The ``checkpoint-N`` folder with the largest N that holds a saved trainer state."""
    if not output_dir.is_dir():
        return None
    found = []
    for child in output_dir.iterdir():
        match = CHECKPOINT_RE.match(child.name)
        if match and child.is_dir() and (child / "trainer_state.json").exists():
            found.append((int(match.group(1)), child))
    return max(found)[1] if found else None


def shown(path: Path) -> str:
    """Paths inside the project are shown (and passed) relative to it, as recipes write them."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)
