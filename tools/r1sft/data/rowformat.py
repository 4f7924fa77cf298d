"""The converted row and the ``dataset_info.json`` entry that describes it, defined together so they cannot drift.

A converted file is JSONL, one ``{"conversations": [{"from": "human"|"gpt", "value": ...}, ...], "system": ...}`` per
line (docs/CONVENTIONS.md); its entry tells LLaMA-Factory's sharegpt loader those column and role names.
"""

from __future__ import annotations

MESSAGES = "conversations"
SYSTEM = "system"
ROLES = ("human", "gpt")  # LLaMA-Factory's sharegpt defaults: user and assistant turns alternate in this order


def converted_row(turns: list[str], system: str) -> dict:
    """``turns`` alternate user and assistant texts. ``system`` is always written ("" when none): LLaMA-Factory's json
    loader builds its schema from the first 10 MB, and a key that appears only later fails the load."""
    human, gpt = ROLES
    return {MESSAGES: [{"from": gpt if i & 1 else human, "value": text} for i, text in enumerate(turns)],
            SYSTEM: system}


def sharegpt_entry(file_name: str, r1sft_meta: dict) -> dict:
    """The ``dataset_info.json`` entry for a file of ``converted_row`` lines (see docs/CONVENTIONS.md)."""
    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": {"messages": MESSAGES, "system": SYSTEM},
        "r1sft": r1sft_meta,
    }
