"""Templated token length of a converted sample, for ``--max-tokens`` and the length report.

Running the chat template's Jinja for every row is slow (milliseconds), so the length is computed as the tokens of
each turn's text plus the template's own tokens, measured once by templating probe conversations with one and two
exchanges (with and without a system prompt) and subtracting their contents. This matches a full
``apply_chat_template`` to within a few tokens: BPE merges across a turn boundary are ignored, and a template that
inserts an empty ``<think></think>`` block (Qwen3) is counted as doing so even when the sample has its own — an
over-estimate, so ``--max-tokens`` errs on the side of dropping. A tokenizer without a chat template is charged
4 tokens per turn.
"""

from __future__ import annotations

from r1sft.errors import R1sftError

FALLBACK_TOKENS_PER_TURN = 4


class TokenCounter:
    def __init__(self, tokenizer: str) -> None:
        from transformers import AutoTokenizer

        self.name = tokenizer
        from r1sft.qwen_vocab import resolve_tokenizer

        path = resolve_tokenizer(tokenizer)  # qwen2.5 / qwen3: the real Qwen vocabulary, built offline
        if tokenizer.startswith("tiny-"):  # r1sft's offline tiny presets, handy in tests and demos
            from r1sft.tiny import ensure_tiny_model

            path = str(ensure_tiny_model(tokenizer))
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
        except Exception as exc:
            raise R1sftError(f"--tokenizer {tokenizer}: cannot load a tokenizer ({' '.join(str(exc).split())[:200]})"
                             ) from None
        self.base, self.per_exchange = self._measure_overhead()

    def _encode(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def _measure_overhead(self) -> tuple[dict[bool, int], int]:
        if not getattr(self.tokenizer, "chat_template", None):
            return {False: 0, True: FALLBACK_TOKENS_PER_TURN}, 2 * FALLBACK_TOKENS_PER_TURN
        base, per_exchange = {}, 0
        for with_system in (False, True):
            overhead = []
            for n in (1, 2):
                messages = [{"role": "system", "content": "Be brief."}] if with_system else []
                for _ in range(n):
                    messages += [{"role": "user", "content": "What is two plus two?"},
                                 {"role": "assistant", "content": "It is four."}]
                text = self.tokenizer.apply_chat_template(messages, tokenize=False)
                total = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
                overhead.append(total - sum(self._encode([m["content"] for m in messages])))
            base[with_system] = overhead[0]
            per_exchange = overhead[1] - overhead[0]
        return base, per_exchange

    def count(self, system: str, turns: list[str]) -> int:
        """Tokens of a conversation: ``turns`` alternate user and assistant texts."""
        texts = [system, *turns] if system else turns
        return sum(self._encode(texts)) + self.base[bool(system)] + self.per_exchange * (len(turns) // 2 - 1)
