"""Tiny, offline stand-ins for Qwen2.5, Qwen3 and Llama-3.2.

Each tiny model has its family's real architecture class (Qwen2 / Qwen3 / Llama), random weights, and a small
byte-level BPE tokenizer that carries the family's special tokens, pre-tokenizer rules and published chat template.
That is enough for LLaMA-Factory to load, train, merge and export it exactly as it would the real model, so tests and
`make demo` exercise the real code paths without touching the Hugging Face hub. Building is deterministic: the same
arguments give byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from r1sft.errors import R1sftError
from r1sft.paths import PACKAGE_DIR, TINY_MODELS_DIR

# Pre-tokenizer regexes from the families' tokenizer.json: Qwen splits digits one by one, Llama 3 in groups of three.
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
QWEN_PLAIN_ADDED = ["<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
LLAMA3_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                  "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
                  "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]


@dataclass(frozen=True)
class TinyFamily:
    """What distinguishes one family's tiny model: architecture, tokenizer rules, special tokens, chat template."""

    name: str
    model_type: str  # transformers model_type: selects Qwen2 / Qwen3 / Llama classes
    split_regex: str
    special_tokens: list[str]
    plain_added_tokens: list[str]  # added tokens that are not "special" (kept by skip_special_tokens)
    bos_token: str | None
    eos_token: str
    pad_token: str | None
    generation_eos: list[str]
    chat_template_file: str
    add_bos: bool = False
    config_extra: dict = field(default_factory=dict)


FAMILIES: dict[str, TinyFamily] = {
    "qwen2.5": TinyFamily(
        name="qwen2.5", model_type="qwen2", split_regex=QWEN_SPLIT, special_tokens=QWEN_SPECIAL,
        plain_added_tokens=QWEN_PLAIN_ADDED, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        generation_eos=["<|im_end|>", "<|endoftext|>"], chat_template_file="qwen2.5.jinja",
        config_extra={"rope_theta": 1000000.0, "tie_word_embeddings": True, "use_sliding_window": False},
    ),
    "qwen3": TinyFamily(
        name="qwen3", model_type="qwen3", split_regex=QWEN_SPLIT, special_tokens=QWEN_SPECIAL,
        # Qwen3 ships <think> and </think> as added tokens that are not special: decoding keeps them.
        plain_added_tokens=QWEN_PLAIN_ADDED + ["<tool_response>", "</tool_response>", "<think>", "</think>"],
        bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        generation_eos=["<|im_end|>", "<|endoftext|>"], chat_template_file="qwen3.jinja",
        config_extra={"rope_theta": 1000000.0, "tie_word_embeddings": True},
    ),
    "llama3.2": TinyFamily(
        name="llama3.2", model_type="llama", split_regex=LLAMA3_SPLIT, special_tokens=LLAMA3_SPECIAL,
        plain_added_tokens=[], bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token=None,
        generation_eos=["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"], chat_template_file="llama3.2.jinja",
        add_bos=True,
        config_extra={
            "rope_theta": 500000.0, "tie_word_embeddings": True, "max_position_embeddings": 131072,
            "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        },
    ),
}

FAMILY_ALIASES = {"qwen2": "qwen2.5", "qwen25": "qwen2.5", "llama3": "llama3.2", "llama": "llama3.2",
                  "llama3.2": "llama3.2", "qwen2.5": "qwen2.5", "qwen3": "qwen3"}


@dataclass(frozen=True)
class TinyShape:
    """Small enough to train a few dozen steps on a laptop CPU in seconds; big enough to be a real transformer."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 176
    vocab: int = 1024  # BPE vocabulary learned from the corpus, before special tokens
    max_position: int = 4096


def _corpus() -> list[str]:
    """A fixed, generated corpus: the words, digits and markup reasoning data uses, so BPE learns useful merges."""
    # one word a line, in a fixed order (the merges BPE learns depend on it)
    words = (PACKAGE_DIR / "tiny_words.txt").read_text(encoding="utf-8").split()
    lines = []
    for i, word in enumerate(words):
        lines.append(f"{word} {words[(i * 7 + 3) % len(words)]} {words[(i * 13 + 5) % len(words)]}.")
        lines.append(f"{word.capitalize()}, {i} + {i * 3 % 97} = {i + i * 3 % 97}.")
    lines += [f"<think>\n{a} + {b} = {a + b}\n</think>\n\n\\boxed{{{a + b}}}" for a, b in zip(range(0, 200, 7),
                                                                                       range(3, 300, 11), strict=False)]
    lines += ["\\boxed{\\frac{1}{2}} $x^2 + y^2$ (a + b) [1, 2, 3] {\"key\": \"value\"} def f(x): return x * 2"]
    return lines * 3


def _build_tokenizer(family: TinyFamily, vocab: int):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(family.split_regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer.add_special_tokens(family.special_tokens)
    tokenizer.add_tokens(family.plain_added_tokens)
    if family.add_bos:
        bos_id = tokenizer.token_to_id(family.bos_token)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{family.bos_token} $A", pair=f"{family.bos_token} $A {family.bos_token} $B",
            special_tokens=[(family.bos_token, bos_id)],
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def _model_config(family: TinyFamily, shape: TinyShape, vocab_size: int, token_ids: dict[str, int]):
    from transformers import AutoConfig

    head_dim = shape.hidden // shape.heads
    eos_ids = [token_ids[t] for t in family.generation_eos]
    kwargs = dict(
        hidden_size=shape.hidden, num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads, intermediate_size=shape.intermediate, vocab_size=vocab_size,
        max_position_embeddings=shape.max_position, rms_norm_eps=1e-6, hidden_act="silu",
        bos_token_id=token_ids.get(family.bos_token or "<|endoftext|>"), eos_token_id=token_ids[family.eos_token],
        torch_dtype="float32",
    )
    kwargs.update(family.config_extra)
    if family.model_type == "qwen3":
        kwargs["head_dim"] = head_dim
    return AutoConfig.for_model(family.model_type, **kwargs), eos_ids


def build_tiny_model(family_name: str, out_dir: str | os.PathLike, shape: TinyShape | None = None,
                     seed: int = 0) -> Path:
    """Write a tiny random model of ``family_name`` (qwen2.5, qwen3, llama3.2) with its tokenizer to ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, PreTrainedTokenizerFast

    family = FAMILIES.get(FAMILY_ALIASES.get(family_name, family_name))
    if family is None:
        raise R1sftError(f"unknown tiny model family {family_name!r}; expected one of {', '.join(FAMILIES)}")
    shape = shape or TinyShape()
    out_dir = Path(out_dir)

    raw = _build_tokenizer(family, shape.vocab)
    chat_template = (PACKAGE_DIR / "chat_templates" / family.chat_template_file).read_text()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token=family.bos_token, eos_token=family.eos_token, pad_token=family.pad_token,
        unk_token=None, model_max_length=shape.max_position, clean_up_tokenization_spaces=False,
        chat_template=chat_template,
    )
    tokenizer.padding_side = "right"
    token_ids = {t: raw.token_to_id(t) for t in family.special_tokens + family.plain_added_tokens}
    # Real checkpoints round the embedding matrix up (Qwen: 151936 rows for 151665 tokens); so do we.
    vocab_size = (len(tokenizer) + 63) // 64 * 64
    config, eos_ids = _model_config(family, shape, vocab_size, token_ids)

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=eos_ids, pad_token_id=token_ids.get(family.pad_token or ""),
        do_sample=True, temperature=0.6, top_p=0.95,
    )

    # Write into a temporary sibling and rename, so an interrupted build never leaves a half-written model behind.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "r1sft_tiny.json").write_text(json.dumps(
            {"family": family.name, "shape": shape.__dict__, "seed": seed}, indent=2, sort_keys=True) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def tiny_preset_family(preset: str) -> str:
    """``tiny-qwen3`` -> ``qwen3``."""
    name = preset.removeprefix("tiny-")
    if FAMILY_ALIASES.get(name) is None:
        raise R1sftError(f"unknown tiny preset {preset!r}; expected tiny-qwen2.5, tiny-qwen3 or tiny-llama3.2")
    return FAMILY_ALIASES[name]


def ensure_tiny_model(preset: str, root: str | os.PathLike | None = None) -> Path:
    """Return the folder of tiny preset ``preset`` (e.g. ``tiny-qwen3``), building it on first use."""
    family = tiny_preset_family(preset)
    out = Path(root or TINY_MODELS_DIR) / f"tiny-{family}"
    if not (out / "r1sft_tiny.json").exists():
        build_tiny_model(family, out)
    return out


def _run(args: argparse.Namespace) -> int:
    if args.preset:
        print(f"{args.preset}: {ensure_tiny_model(args.preset)}")
        return 0
    if not args.family or not args.out:
        raise R1sftError("give --preset tiny-<family>, or --family and --out")
    shape = TinyShape(hidden=args.hidden, layers=args.layers, heads=args.heads, kv_heads=args.kv_heads,
                      intermediate=args.intermediate, vocab=args.vocab)
    out = build_tiny_model(args.family, args.out, shape=shape, seed=args.seed)
    print(f"tiny {args.family} model written to {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tiny-model", help="build a tiny random model of a family's real architecture (offline, deterministic)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--preset", choices=[f"tiny-{name}" for name in FAMILIES],
                        help="build (once) the cached model a tiny preset points at")
    parser.add_argument("--family", choices=sorted(FAMILIES), help="model family to imitate")
    parser.add_argument("--out", help="output folder")
    defaults = TinyShape()
    parser.add_argument("--hidden", type=int, default=defaults.hidden)
    parser.add_argument("--layers", type=int, default=defaults.layers)
    parser.add_argument("--heads", type=int, default=defaults.heads)
    parser.add_argument("--kv-heads", type=int, default=defaults.kv_heads)
    parser.add_argument("--intermediate", type=int, default=defaults.intermediate)
    parser.add_argument("--vocab", type=int, default=defaults.vocab, help="BPE merges learned before special tokens")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=_run)
