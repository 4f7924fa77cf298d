"""Tiny, offline stand-ins for Qwen2.5, Qwen3 and Llama-3.2.

Each tiny model has its family's real architecture class (Qwen2 / Qwen3 / Qwen3-MoE / Llama), random weights, and a
small byte-level BPE tokenizer that carries the family's special tokens, pre-tokenizer rules and published chat
template, with the family's published EOS ids and sampling defaults in its configs. That is enough for LLaMA-Factory
to load, train, merge and export it exactly as it would the real model, so tests and `make demo` exercise the real
code paths without touching the Hugging Face hub. The stand-ins in ``TINY_PRESETS`` imitate the real layouts where
they matter: the real Qwen vocabulary (``r1sft.qwen_vocab``: real token ids, so tokenization boundaries are the real
ones), untied input and output embeddings (7B/8B and larger), Qwen3-MoE experts, a base checkpoint's EOS. Building is
deterministic: the same arguments give byte-identical files; a cached model built from other inputs is rebuilt.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from r1sft.errors import R1sftError
from r1sft.paths import PACKAGE_DIR, TINY_MODELS_DIR
from r1sft.qwen_vocab import QWEN3_PLAIN_ADDED, QWEN_PLAIN_ADDED, QWEN_SPECIAL, QWEN_SPLIT
from r1sft.yamlio import atomic_folder

# Pre-tokenizer regexes from the families' tokenizer.json: Qwen splits digits one by one, Llama 3 in groups of three.
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
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
    generation_eos: list[str]  # generation_config.json eos_token_id, as published
    chat_template_file: str
    add_bos: bool = False
    config_eos: list[str] | None = None  # config.json eos_token_id when it is a list (Llama-3.2), else eos_token
    base_eos: str = "<|endoftext|>"  # what the family's base (pre-trained) checkpoints end text with
    config_extra: dict = field(default_factory=dict)


FAMILIES: dict[str, TinyFamily] = {
    "qwen2.5": TinyFamily(
        name="qwen2.5", model_type="qwen2", split_regex=QWEN_SPLIT, special_tokens=QWEN_SPECIAL,
        plain_added_tokens=QWEN_PLAIN_ADDED, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        generation_eos=["<|im_end|>", "<|endoftext|>"], chat_template_file="qwen2.5.jinja",
        config_extra={"rope_theta": 1000000.0, "use_sliding_window": False},
    ),
    "qwen3": TinyFamily(
        name="qwen3", model_type="qwen3", split_regex=QWEN_SPLIT, special_tokens=QWEN_SPECIAL,
        plain_added_tokens=QWEN3_PLAIN_ADDED,
        bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        generation_eos=["<|im_end|>", "<|endoftext|>"], chat_template_file="qwen3.jinja",
        config_extra={"rope_theta": 1000000.0},
    ),
    "llama3.2": TinyFamily(
        name="llama3.2", model_type="llama", split_regex=LLAMA3_SPLIT, special_tokens=LLAMA3_SPECIAL,
        plain_added_tokens=[], bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token=None,
        generation_eos=["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"], chat_template_file="llama3.2.jinja",
        add_bos=True, config_eos=["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"], base_eos="<|end_of_text|>",
        config_extra={
            "rope_theta": 500000.0, "max_position_embeddings": 131072,
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
    vocab: int = 1024  # BPE vocabulary learned from the corpus, before special tokens (ignored with real_vocab)
    max_position: int = 4096
    tied: bool = True  # input and output embeddings shared (small checkpoints); 7B/8B and larger untie them
    vocab_rows: int = 0  # embedding rows; 0: the tokenizer's size rounded up to 64
    experts: int = 0  # > 0: a Qwen3-MoE model (every layer sparse), with these routed experts
    experts_per_token: int = 0
    moe_intermediate: int = 0


@dataclass(frozen=True)
class TinyVariant:
    """How a stand-in departs from the small default: the real vocabulary, a base (pre-trained) checkpoint."""

    real_vocab: bool = False  # the real Qwen vocabulary (r1sft.qwen_vocab): token ids as in the real models
    base: bool = False  # tokenizer and generation config end text with the family's base EOS, greedy, no template EOT


# The tiny presets (presets.yaml names them too): family, variant and shape of the model each one stands in for.
TINY_PRESETS: dict[str, tuple[str, TinyVariant, TinyShape]] = {
    "tiny-qwen2.5": ("qwen2.5", TinyVariant(), TinyShape()),
    "tiny-qwen3": ("qwen3", TinyVariant(), TinyShape()),
    "tiny-llama3.2": ("llama3.2", TinyVariant(), TinyShape()),
    # the 7B/8B layout: the real vocabulary and embedding rows, untied input and output embeddings
    "tiny-qwen2.5-7b": ("qwen2.5", TinyVariant(real_vocab=True), TinyShape(tied=False, vocab_rows=152064)),
    "tiny-qwen3-8b": ("qwen3", TinyVariant(real_vocab=True), TinyShape(tied=False, vocab_rows=151936)),
    # Qwen3-30B-A3B's layout in miniature: every layer a sparse MoE block (8 experts, 2 per token)
    "tiny-qwen3-moe": ("qwen3", TinyVariant(real_vocab=True),
                       TinyShape(tied=False, vocab_rows=151936, experts=8, experts_per_token=2, moe_intermediate=32)),
    # a base checkpoint: its tokenizer and generation config end text with <|endoftext|>, not <|im_end|>
    "tiny-qwen3-base": ("qwen3", TinyVariant(base=True), TinyShape()),
}
BUILD_VERSION = 2  # bump when what a build writes changes: cached tiny models are rebuilt


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
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

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
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in family.special_tokens])
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in family.plain_added_tokens])
    return tokenizer


def _post_processor(raw, family: TinyFamily) -> None:
    from tokenizers import processors

    if family.add_bos:
        bos_id = raw.token_to_id(family.bos_token)
        raw.post_processor = processors.TemplateProcessing(
            single=f"{family.bos_token} $A", pair=f"{family.bos_token} $A {family.bos_token} $B",
            special_tokens=[(family.bos_token, bos_id)],
        )
    else:
        raw.post_processor = processors.ByteLevel(trim_offsets=False)


def _tokenizer(family: TinyFamily, shape: TinyShape, variant: TinyVariant):
    """The fast tokenizer: a small BPE learned from the corpus, or the real Qwen vocabulary; the family's tokens."""
    from transformers import PreTrainedTokenizerFast

    if variant.real_vocab:
        if family.name not in ("qwen2.5", "qwen3"):
            raise R1sftError(f"no real vocabulary for {family.name}: only Qwen's ships under a free licence")
        from r1sft.qwen_vocab import raw_tokenizer

        raw = raw_tokenizer(family.name)
    else:
        raw = _build_tokenizer(family, shape.vocab)
    _post_processor(raw, family)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token=family.bos_token, eos_token=family.base_eos if variant.base else family.eos_token,
        pad_token=family.pad_token, unk_token=None, model_max_length=shape.max_position,
        clean_up_tokenization_spaces=False, chat_template=_chat_template(family),
    )
    tokenizer.padding_side = "right"
    return tokenizer, raw


def _chat_template(family: TinyFamily) -> str:
    return (PACKAGE_DIR / "chat_templates" / family.chat_template_file).read_text()


def _model_config(family: TinyFamily, shape: TinyShape, vocab_size: int, token_ids: dict[str, int],
                  variant: TinyVariant):
    from transformers import AutoConfig

    eos = family.base_eos if variant.base else family.eos_token
    config_eos = [token_ids[t] for t in family.config_eos] if family.config_eos and not variant.base else token_ids[eos]
    kwargs = dict(
        hidden_size=shape.hidden, num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads, intermediate_size=shape.intermediate, vocab_size=vocab_size,
        max_position_embeddings=shape.max_position, rms_norm_eps=1e-6, hidden_act="silu",
        bos_token_id=token_ids.get(family.bos_token or "<|endoftext|>"), eos_token_id=config_eos,
        tie_word_embeddings=shape.tied, torch_dtype="float32",
    )
    kwargs.update(copy.deepcopy(family.config_extra))  # transformers rewrites rope_scaling in place
    model_type = family.model_type
    if model_type == "qwen3":
        kwargs["head_dim"] = shape.hidden // shape.heads
    if shape.experts:
        if model_type != "qwen3":
            raise R1sftError(f"a tiny MoE model is a Qwen3-MoE one; {family.name} has none")
        model_type = "qwen3_moe"  # Qwen3-30B-A3B's config: every layer sparse, top-k weights renormalised
        kwargs.update(num_experts=shape.experts, num_experts_per_tok=shape.experts_per_token,
                      moe_intermediate_size=shape.moe_intermediate, decoder_sparse_step=1, mlp_only_layers=[],
                      norm_topk_prob=True, router_aux_loss_coef=0.001)
    return AutoConfig.for_model(model_type, **kwargs)


def _generation_config(family: TinyFamily, config, token_ids: dict[str, int], variant: TinyVariant):
    """The family's published generation_config.json: its EOS list and sampling defaults (a base one: greedy)."""
    from transformers import GenerationConfig

    from r1sft.presets import families

    pad = token_ids.get(family.pad_token or "")
    if variant.base:  # Qwen2.5-7B, Qwen3-8B-Base...: {"eos_token_id": 151643, "do_sample": false}
        return GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=token_ids[family.base_eos],
                                pad_token_id=pad, do_sample=False)
    sampling = families()[family.name].generation
    return GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=[token_ids[t] for t in family.generation_eos],
                            pad_token_id=pad, do_sample=True, **sampling)


def build_digest(family: TinyFamily, shape: TinyShape, variant: TinyVariant, seed: int) -> str:
    """What a build depends on, hashed: a cached model built from anything else is rebuilt."""
    from r1sft.presets import families

    spec = {"version": BUILD_VERSION, "family": repr(family), "shape": repr(shape), "variant": repr(variant),
            "seed": seed, "template": _chat_template(family), "generation": families()[family.name].generation}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def build_tiny_model(family_name: str, out_dir: str | os.PathLike, shape: TinyShape | None = None,
                     seed: int = 0, variant: TinyVariant | None = None) -> Path:
    """Write a tiny random model of ``family_name`` (qwen2.5, qwen3, llama3.2) with its tokenizer to ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM

    family = FAMILIES.get(FAMILY_ALIASES.get(family_name, family_name))
    if family is None:
        raise R1sftError(f"unknown tiny model family {family_name!r}; expected one of {', '.join(FAMILIES)}")
    shape, variant, out_dir = shape or TinyShape(), variant or TinyVariant(), Path(out_dir)
    digest = build_digest(family, shape, variant, seed)

    tokenizer, raw = _tokenizer(family, shape, variant)
    token_ids = {t: raw.token_to_id(t) for t in family.special_tokens + family.plain_added_tokens}
    # Real checkpoints round the embedding matrix up (Qwen: 151936 rows for 151665 tokens); so do we.
    vocab_size = shape.vocab_rows or (len(tokenizer) + 63) // 64 * 64
    if vocab_size < len(tokenizer):
        raise R1sftError(f"vocab_rows {vocab_size} < the tokenizer's {len(tokenizer)} tokens")
    config = _model_config(family, shape, vocab_size, token_ids, variant)

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = _generation_config(family, config, token_ids, variant)

    with atomic_folder(out_dir) as tmp:  # an interrupted build never leaves a half-written model behind
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "r1sft_tiny.json").write_text(json.dumps(
            {"family": family.name, "shape": shape.__dict__, "variant": variant.__dict__, "seed": seed,
             "build": digest}, indent=2, sort_keys=True) + "\n")
    return out_dir


def tiny_preset_spec(preset: str) -> tuple[str, TinyVariant, TinyShape]:
    """``tiny-qwen3`` -> (family, variant, shape) of the model it stands for."""
    spec = TINY_PRESETS.get(preset)
    if spec is None:
        alias = FAMILY_ALIASES.get(preset.removeprefix("tiny-"))
        spec = TINY_PRESETS.get(f"tiny-{alias}") if alias else None
    if spec is None:
        raise R1sftError(f"unknown tiny preset {preset!r}; expected one of {', '.join(TINY_PRESETS)}")
    return spec


def tiny_preset_family(preset: str) -> str:
    """``tiny-qwen3`` -> ``qwen3``."""
    return tiny_preset_spec(preset)[0]


def ensure_tiny_model(preset: str, root: str | os.PathLike | None = None) -> Path:
    """Return the folder of tiny preset ``preset`` (e.g. ``tiny-qwen3``), building it on first use."""
    family, variant, shape = tiny_preset_spec(preset)
    name = preset if preset in TINY_PRESETS else f"tiny-{family}"
    out = Path(root or TINY_MODELS_DIR) / name
    digest = build_digest(FAMILIES[family], shape, variant, 0)
    stamp = out / "r1sft_tiny.json"
    if not stamp.exists() or json.loads(stamp.read_text()).get("build") != digest:
        build_tiny_model(family, out, shape=shape, variant=variant)
    return out


def _run(args: argparse.Namespace) -> int:
    if args.preset:
        print(f"{args.preset}: {ensure_tiny_model(args.preset)}")
        return 0
    if not args.family or not args.out:
        raise R1sftError("give --preset tiny-<family>, or --family and --out")
    shape = TinyShape(hidden=args.hidden, layers=args.layers, heads=args.heads, kv_heads=args.kv_heads,
                      intermediate=args.intermediate, vocab=args.vocab, tied=not args.untied)
    variant = TinyVariant(real_vocab=args.real_vocab, base=args.base)
    out = build_tiny_model(args.family, args.out, shape=shape, seed=args.seed, variant=variant)
    print(f"tiny {args.family} model written to {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tiny-model", help="build a tiny random model of a family's real architecture (offline, deterministic)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--preset", choices=list(TINY_PRESETS),
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
    parser.add_argument("--untied", action="store_true", help="separate input and output embeddings (7B/8B layout)")
    parser.add_argument("--real-vocab", action="store_true", help="the real Qwen vocabulary (Qwen families only)")
    parser.add_argument("--base", action="store_true",
                        help="a base checkpoint: EOS <|endoftext|> (Llama: <|end_of_text|>), greedy generation config")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=_run)
