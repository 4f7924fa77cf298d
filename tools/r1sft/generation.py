"""The generation config a fine-tuned model is served with: its template's end-of-turn token must stop it.

``transformers`` stops ``generate`` at the ``eos_token_id`` of the model's ``generation_config.json`` and nothing
else. A chat-tuned checkpoint lists its end-of-turn token there (Qwen: ``[<|im_end|>, <|endoftext|>]``); a base
checkpoint lists only ``<|endoftext|>``. Trained on ChatML turns it learns to end each reply with ``<|im_end|>``, and
with the base config it would never stop (open-r1 #603). Neither LLaMA-Factory's training nor its export rewrites
that file for an adapter, so r1sft does: a full-SFT recipe of a base model points ``generation_config`` at the file
:func:`chat_generation_config` describes (the trainer saves it with the model; transformers 5's Trainer also puts the
tokenizer's EOS, already ``<|im_end|>``, first, so the saved list may name it twice), and ``r1sft merge`` aligns the
exported model's (:func:`align_generation_config`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from r1sft.presets import Family


def local_token_ids(folder: Path, tokens: list[str]) -> dict[str, int]:
    """Ids of ``tokens`` among the added tokens of a local tokenizer.json (no transformers import)."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        return {}
    added = json.loads(path.read_text(encoding="utf-8")).get("added_tokens", [])
    table = {item["content"]: item["id"] for item in added if isinstance(item, dict)}
    return {token: table[token] for token in tokens if token in table}


def qwen_token_ids(family: str, tokens: list[str]) -> dict[str, int]:
    """Ids of Qwen's special and added tokens in the real vocabulary (from 151643, as r1sft.qwen_vocab adds them)."""
    from r1sft.qwen_vocab import REGULAR_TOKENS, added_tokens

    table = {token: REGULAR_TOKENS + i for i, (token, _) in enumerate(added_tokens(family))}
    return {token: table[token] for token in tokens if token in table}


def chat_generation_config(family: Family, ids: dict[str, int], base_eos: str = "<|endoftext|>") -> dict[str, Any]:
    """What a chat model trained from a base checkpoint of ``family`` should be served with: the end-of-turn token
    first among its EOS ids, and the family's published sampling defaults (greedy decoding makes reasoning models
    repeat themselves)."""
    eos = [ids[family.end_of_turn]] + ([ids[base_eos]] if base_eos in ids and base_eos != family.end_of_turn else [])
    config: dict[str, Any] = {"bos_token_id": ids.get(base_eos), "eos_token_id": eos, "pad_token_id": ids.get(base_eos)}
    config.update({"do_sample": True, **family.generation})
    return config


def align_generation_config(model_dir: str | os.PathLike, end_of_turn: str, family: Family | None) -> str | None:
    """Make ``end_of_turn`` an EOS id of ``model_dir``'s generation config; a note when it had to, else None."""
    from transformers import AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    eot = tokenizer.convert_tokens_to_ids(end_of_turn)
    if eot is None or eot == tokenizer.unk_token_id:
        return None
    try:
        config = GenerationConfig.from_pretrained(model_dir)
    except OSError:
        config = GenerationConfig()
    eos = config.eos_token_id
    eos = list(eos) if isinstance(eos, list | tuple) else [] if eos is None else [eos]
    if eot in eos:
        return None
    config.eos_token_id = [eot, *eos]
    if not config.do_sample and family is not None and family.generation:  # a base checkpoint's greedy default
        for key, value in {"do_sample": True, **family.generation}.items():
            setattr(config, key, value)
    config.save_pretrained(model_dir)
    return (f"{end_of_turn} (id {eot}) added to the EOS ids in {Path(model_dir) / 'generation_config.json'}: the base "
            f"model's ({eos}) would never stop a reply")
