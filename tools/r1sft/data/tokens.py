"""Templated token length of converted samples, for ``--max-tokens`` and the length report.

Running the chat template's Jinja for every row is slow (milliseconds), so the length is computed as the tokens of
each turn's text plus the template's own tokens, measured once by templating probe conversations with one and two
exchanges (with and without a system prompt) and subtracting their contents. This matches a full
``apply_chat_template`` to within a few tokens: BPE merges across a turn boundary are ignored, and a template that
inserts an empty ``<think></think>`` block (Qwen3) is counted as doing so even when the sample has its own — an
over-estimate, so ``--max-tokens`` errs on the side of dropping. A tokenizer without a chat template is charged
4 tokens per turn.

Speed and memory: a tokenizer with a ``tokenizer.json`` (every fast tokenizer) is loaded with ``tokenizers`` alone
and its template rendered with transformers' own Jinja renderer, so neither torch nor ``AutoTokenizer`` is imported
(they cost ~600 MB of resident memory); turns are counted a batch at a time with ``encode_batch_fast`` (Rust, on all
cores, no offsets), in sub-batches so the encodings held at once stay small. Other tokenizers fall back to
``AutoTokenizer``.
"""

from __future__ import annotations

import json
from pathlib import Path

from r1sft.errors import R1sftError

FALLBACK_TOKENS_PER_TURN = 4
ENCODE_BATCH = 256  # texts per encode call: bounds the encodings alive at once (a few MB of text)
_TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"]


class TokenCounter:
    def __init__(self, tokenizer: str) -> None:
        self.name = tokenizer
        from r1sft.qwen_vocab import resolve_tokenizer

        path = resolve_tokenizer(tokenizer)  # qwen2.5 / qwen3: the real Qwen vocabulary, built offline
        if tokenizer.startswith("tiny-"):  # r1sft's offline tiny presets, handy in tests and demos
            from r1sft.tiny import ensure_tiny_model

            path = str(ensure_tiny_model(tokenizer))
        try:
            folder = _tokenizer_folder(path)
            if folder is not None and (folder / "tokenizer.json").is_file():
                self._load_fast(folder)
            else:
                self._load_auto(path)
        except R1sftError:
            raise
        except Exception as exc:
            raise R1sftError(f"--tokenizer {tokenizer}: cannot load a tokenizer ({' '.join(str(exc).split())[:200]})"
                             ) from None
        self.base, self.per_exchange = self._measure_overhead()

    # -- loading -------------------------------------------------------------------------------------------------------

    def _load_fast(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
        backend.no_truncation()
        backend.no_padding()
        config = _json(folder / "tokenizer_config.json")
        template = config.get("chat_template")
        if (folder / "chat_template.jinja").is_file():
            template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        elif isinstance(template, list):  # named templates: the default one
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        special = {**_special_tokens(_json(folder / "special_tokens_map.json")), **_special_tokens(config)}
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
        self._lengths = lambda texts: [len(e.ids) for e in encode(texts, add_special_tokens=False)]
        self._template = template or None
        self._render = lambda messages: _render(template, messages, special)

    def _load_auto(self, path: str) -> None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path)
        self._lengths = lambda texts: [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
        self._template = getattr(tok, "chat_template", None)
        self._render = lambda messages: tok.apply_chat_template(messages, tokenize=False)

    # -- counting ------------------------------------------------------------------------------------------------------

    def _encode(self, texts: list[str]) -> list[int]:
        out: list[int] = []
        for i in range(0, len(texts), ENCODE_BATCH):
            out.extend(self._lengths(texts[i:i + ENCODE_BATCH]))
        return out

    def _measure_overhead(self) -> tuple[dict[bool, int], int]:
        if not self._template:
            return {False: 0, True: FALLBACK_TOKENS_PER_TURN}, 2 * FALLBACK_TOKENS_PER_TURN
        base, per_exchange = {}, 0
        for with_system in (False, True):
            overhead = []
            for n in (1, 2):
                messages = [{"role": "system", "content": "Be brief."}] if with_system else []
                for _ in range(n):
                    messages += [{"role": "user", "content": "What is two plus two?"},
                                 {"role": "assistant", "content": "It is four."}]
                total = self._encode([self._render(messages)])[0]
                overhead.append(total - sum(self._encode([m["content"] for m in messages])))
            base[with_system] = overhead[0]
            per_exchange = overhead[1] - overhead[0]
        return base, per_exchange

    def count(self, system: str, turns: list[str]) -> int:
        """Tokens of a conversation: ``turns`` alternate user and assistant texts."""
        return self.count_many([(system, turns)])[0]

    def count_many(self, conversations: list[tuple[str, list[str]]]) -> list[int]:
        """``count`` of each (system, turns), their texts encoded in batches."""
        texts: list[str] = []
        for system, turns in conversations:
            if system:
                texts.append(system)
            texts.extend(turns)
        lengths = iter(self._encode(texts))
        counts = []
        for system, turns in conversations:
            n = sum(next(lengths) for _ in range(len(turns) + bool(system)))
            counts.append(n + self.base[bool(system)] + self.per_exchange * (len(turns) // 2 - 1))
        return counts


def _tokenizer_folder(path: str) -> Path | None:
    """A local folder, or the tokenizer files of a hub id fetched into the hub cache (no model weights)."""
    if Path(path).is_dir():
        return Path(path)
    if Path(path).exists():
        return None
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(path, allow_patterns=_TOKENIZER_FILES))


def _json(path: Path) -> dict:
    if not path.is_file():
        return {}
    value = json.loads(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else {}


def _special_tokens(config: dict) -> dict[str, str]:
    """What ``apply_chat_template`` passes the template as ``bos_token`` and the like."""
    special = {}
    for key, value in config.items():
        if key.endswith("_token") and key != "additional_special_token":
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                special[key] = value
    return special


def _render(template: str, messages: list[dict], special: dict[str, str]) -> str:
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(conversations=[messages], chat_template=template, **special)
    return rendered[0]
