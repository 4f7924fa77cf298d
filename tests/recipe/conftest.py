"""Shared pieces of the recipe and check tests: ``root``, a project root made for the test, with data.

Recipes use paths relative to the project root (``data``, ``ds_configs/z3.json``, ``.cache/tiny-models/...``);
``check_recipes(..., root=...)`` resolves them against a root of the test's making, so tests never depend on what a
developer has in data/ and never write there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1sft import paths

THOUGHT_TOKENS = ["<|begin_of_thought|>", "<|end_of_thought|>", "<|begin_of_solution|>", "<|end_of_solution|>"]

ROWS = [
    {"conversations": [{"from": "human", "value": "What is 2 + 3?"},
                       {"from": "gpt", "value": "<think>\n2 + 3 = 5.\n</think>\n\n\\boxed{5}"}]},
    {"conversations": [{"from": "human", "value": "What is 4 x 6?"},
                       {"from": "gpt", "value": "<think>\n4 x 6 = 24.\n</think>\n\n\\boxed{24}"}],
     "system": "Think first."},
    {"conversations": [{"from": "human", "value": "What is 10 - 7?"},
                       {"from": "gpt", "value": "<think>\n10 - 7 = 3.\n</think>\n\nThe answer is \\boxed{3}."}]},
] * 8


def _entry(file_name: str, **r1sft) -> dict:
    entry = {"file_name": file_name, "formatting": "sharegpt",
             "columns": {"messages": "conversations", "system": "system"}}
    if r1sft:
        entry["r1sft"] = r1sft
    return entry


def make_root(root: Path) -> Path:
    """A project root with data/ (r1sft_sample, a --think thought dataset `stratos`, a registered-but-missing
    `ghost`), and links to the real ds_configs/ and .cache/ (tiny models)."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(row) + "\n" for row in ROWS)
    (data / "r1sft_sample.jsonl").write_text(text, encoding="utf-8")
    (data / "stratos.jsonl").write_text(text, encoding="utf-8")
    info = {
        "r1sft_sample": _entry("r1sft_sample.jsonl", think="native", special_tokens=[]),
        "stratos": _entry("stratos.jsonl", think="thought", special_tokens=THOUGHT_TOKENS),
        "ghost": _entry("ghost.jsonl"),
    }
    (data / "dataset_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    for name, target in (("ds_configs", paths.DS_CONFIGS_DIR), (".cache", paths.CACHE_DIR)):
        link = root / name
        if not link.exists():
            target.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_root(tmp_path_factory.mktemp("root"))
