"""What re-rendering changes in a recipe already on disk, in a few words (``r1sft recipe`` says it as it writes).

Re-rendering writes where the recipe's header and the docs say it is (``recipes/<preset>/``), so a committed headline
recipe can be replaced by one for other hardware; the summary names the keys that changed and, for a committed
recipe, how to get it back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from r1sft import paths
from r1sft.presets import catalogue
from r1sft.recipe.check import parse_header

SHOWN = 6  # changed keys named before "and N more"


def committed_recipes() -> set[Path]:
    """The headline recipes committed under recipes/ (``make recipes`` renders them)."""
    out = set()
    for entry in catalogue()["headline"]:
        for method in entry["methods"]:
            folder = paths.RECIPES_DIR / entry["preset"]
            out |= {folder / f"{method}_sft.yaml", folder / f"{method}_merge.yaml"}
    return out


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 24 else text[:21] + "..."


def changed_keys(old_text: str, new_text: str) -> list[str]:
    """``key old -> new`` for each value that differs (the header's planned machine first), ``+key`` / ``-key``."""
    try:
        old, new = yaml.safe_load(old_text) or {}, yaml.safe_load(new_text) or {}
    except yaml.YAMLError:
        return ["(the old file was not valid YAML)"]
    if not isinstance(old, dict) or not isinstance(new, dict):
        return []
    out = []
    for before, after in ((parse_header(old_text), parse_header(new_text)), (old, new)):
        for key in list(before) + [k for k in after if k not in before]:
            if key not in after:
                out.append(f"-{key}")
            elif key not in before:
                out.append(f"+{key} {_short(after[key])}")
            elif before[key] != after[key]:
                out.append(f"{key} {_short(before[key])} -> {_short(after[key])}")
    return out


def replaced(path: Path, new_text: str) -> str | None:
    """What writing ``new_text`` over ``path`` changes (None when nothing or no file is there)."""
    if not path.is_file():
        return None
    old_text = path.read_text(encoding="utf-8", errors="replace")
    if old_text == new_text:
        return None
    keys = changed_keys(old_text, new_text) or ["comments only"]
    more = f", and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    if path.resolve() not in {p.resolve() for p in committed_recipes()}:
        return f"replacing the one there: {', '.join(keys[:SHOWN])}{more}"
    shown = path.resolve().relative_to(paths.REPO_ROOT).as_posix()
    return f"replacing the committed recipe: {', '.join(keys[:SHOWN])}{more} (`git checkout {shown}` restores it)"
