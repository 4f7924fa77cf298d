"""Whether plain ``llamafactory-cli export`` of a merge recipe gives a model that serves what it was trained on.

LLaMA-Factory's export saves the base model's tokenizer (its chat template untouched unless the template replaces
it) and the base model's ``generation_config.json``. Where either differs from training, only ``r1sft merge``
(which checks token ids and fixes both, :mod:`r1sft.merge.parity`) gives a matching model; the recipe's header and
``r1sft check`` say so before anything runs. The cases, each proven by the parity tests on stand-ins:

* Llama-3.2's chat template adds a dated system block that LLaMA-Factory's ``llama3`` never trains;
* Qwen3's drops earlier replies' reasoning, which ``qwen3`` trains in context without ``mask_history``, and served
  with ``enable_thinking=False`` opens an empty think block that ``qwen3_nothink`` never trains;
* a base checkpoint's generation config stops only at ``<|endoftext|>``, never after a reply's end-of-turn token;
* new special tokens on a model with tied embeddings: LoRA trains the two matrices apart, and the export keeps
  ``tie_word_embeddings: true`` (``r1sft merge`` unties the config).

For full SFT of a base model the recipe points ``generation_config`` at a file written beside it
(:func:`base_generation_config`); the trainer saves it with the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from r1sft.presets import Family, Preset, family_for_model, presets

LLAMA_DATE = ("Llama-3.2's chat template adds a 'Cutting Knowledge Date / Today Date' system block that "
              "LLaMA-Factory's llama3 template never trains")
QWEN3_HISTORY = ("training keeps earlier replies' reasoning in context (no mask_history) and Qwen3's chat template "
                 "drops it")
QWEN3_NOTHINK = ("served with enable_thinking=False Qwen3's chat template opens the reply with an empty think block, "
                 "and it drops earlier replies' reasoning: qwen3_nothink trains neither")


def _local(model: str, root: Path) -> Path | None:
    folder = Path(model) if Path(model).is_absolute() else root / model
    return folder if (folder / "config.json").is_file() else None


def _preset_for_hub_id(model: str) -> Preset | None:
    return next((p for p in presets().values() if p.hub_id and p.hub_id.lower() == model.lower()), None)


def published_template(model: str, root: Path) -> str | None:
    """Which shipped chat template (``chat_templates/*.jinja``) the base model carries, byte for byte; None if none."""
    from r1sft.paths import PACKAGE_DIR

    folder = _local(model, root)
    if folder is None:
        preset = _preset_for_hub_id(model)
        return preset.chat_template if preset else None
    text = None
    if (folder / "chat_template.jinja").is_file():
        text = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    elif (folder / "tokenizer_config.json").is_file():
        text = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template")
    for path in sorted((PACKAGE_DIR / "chat_templates").glob("*.jinja")):
        if not path.name.startswith("train_") and path.read_text(encoding="utf-8") == text:
            return path.name
    return None


def stops_at_end_of_turn(model: str, family: Family, root: Path) -> bool:
    """Whether the base model's generation config already lists the family's end-of-turn token as an EOS id."""
    from r1sft.generation import local_token_ids

    folder = _local(model, root)
    if folder is None:
        preset = _preset_for_hub_id(model)
        return not (preset and preset.base)
    ids = local_token_ids(folder, [family.end_of_turn])
    try:
        eos = json.loads((folder / "generation_config.json").read_text(encoding="utf-8")).get("eos_token_id")
    except (OSError, json.JSONDecodeError):
        return False
    return family.end_of_turn in ids and ids[family.end_of_turn] in (eos if isinstance(eos, list) else [eos])


def _tied(model: str, root: Path) -> bool:
    folder = _local(model, root)
    if folder is None:
        preset = _preset_for_hub_id(model)
        return bool(preset and preset.shape.tied)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return bool(config.get("tie_word_embeddings", False))


def plain_export_gaps(merge: dict[str, Any], root: Path) -> list[str]:
    """Why ``llamafactory-cli export`` of this merge recipe would not give a model that matches training."""
    model, template = str(merge.get("model_name_or_path", "")), merge.get("template")
    family = family_for_model(str(_local(model, root) or model))
    if family is None:
        return []
    gaps = []
    published = published_template(model, root)
    if template == "llama3" and published == "llama3.2.jinja":
        gaps.append(LLAMA_DATE)
    if template == "qwen3" and published == "qwen3.jinja" and not merge.get("mask_history"):
        gaps.append(QWEN3_HISTORY)
    if template == "qwen3_nothink" and published == "qwen3.jinja":
        gaps.append(QWEN3_NOTHINK)
    if merge.get("add_special_tokens") and _tied(model, root):
        gaps.append("new special tokens train the tied input and output embeddings apart, and plain export keeps "
                    "tie_word_embeddings: true: a loader that ties them (vLLM) drops one")
    if not stops_at_end_of_turn(model, family, root):
        gaps.append(f"the base checkpoint's generation_config.json does not stop at {family.end_of_turn}, which "
                    "ends every trained reply: the merged model would not stop")
    return gaps


def base_generation_config(preset: Preset, model_path: str, root: Path) -> dict[str, Any]:
    """The generation config a full SFT of base checkpoint ``preset`` saves (r1sft.generation)."""
    from r1sft.generation import chat_generation_config, local_token_ids, qwen_token_ids

    family = preset.family
    tokens = [family.end_of_turn, "<|endoftext|>"]
    folder = _local(model_path, root)
    ids = local_token_ids(folder, tokens) if folder else qwen_token_ids(family.name, tokens)
    return chat_generation_config(family, ids)


def export_notes(merge: dict[str, Any], root: Path) -> list[str]:
    """What ``r1sft check`` says about a merge recipe whose plain export would not match training."""
    return [f"use `r1sft merge`, not plain llamafactory-cli export: {gap}" for gap in plain_export_gaps(merge, root)]
