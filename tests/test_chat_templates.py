"""The shipped chat templates are the published ones, byte for byte, and render what the hub's render.

Byte identity matters beyond rendering: tools recognise a model by its exact template (TRL's training-template
lookup, ``r1sft check``'s ``published_template``). The rendering cases are the ones the community rewrite of Qwen3's
template that r1sft shipped before got wrong: an assistant turn with ``content: None`` (a tool call) and list content.
"""

from __future__ import annotations

import pytest

from r1sft.paths import PACKAGE_DIR, REPO_ROOT

PUBLISHED = REPO_ROOT / "tests" / "fixtures" / "published_templates"
SHIPPED = {"qwen2.5.jinja": "qwen2_5.jinja", "qwen3.jinja": "qwen3.jinja",
           "qwen3_instruct_2507.jinja": "qwen3_instruct_2507.jinja", "llama3.2.jinja": "llama3_2.jinja"}
TOOLS = [{"type": "function", "function": {
    "name": "add", "description": "Add two numbers",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                   "required": ["a", "b"]}}}]
CONVERSATIONS = {
    "tool call": ([{"role": "user", "content": "What is 1+2?"},
                   {"role": "assistant", "content": None,
                    "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": 2}}}]},
                   {"role": "tool", "content": "3"},
                   {"role": "assistant", "content": "<think>\nok\n</think>\n\nIt is 3."}], TOOLS),
    "None content": ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}], None),
    "list content": ([{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": [{"type": "text", "text": "hi"}]}], None),
}


@pytest.mark.parametrize("shipped", sorted(SHIPPED))
def test_shipped_template_is_the_published_file_byte_for_byte(shipped):
    assert (PACKAGE_DIR / "chat_templates" / shipped).read_bytes() == (PUBLISHED / SHIPPED[shipped]).read_bytes()


def _render(tokenizer, template: str, case: str):
    messages, tools = CONVERSATIONS[case]
    try:
        return tokenizer.apply_chat_template(messages, tools=tools, chat_template=template, tokenize=False,
                                             add_generation_prompt=case != "tool call")
    except Exception as exc:  # the published template's own failure is part of what it does
        return f"raises {type(exc).__name__}"


@pytest.mark.parametrize("case", sorted(CONVERSATIONS))
@pytest.mark.parametrize("shipped", sorted(SHIPPED))
def test_shipped_template_renders_tools_none_and_lists_as_the_hub_does(shipped, case, tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model("tiny-llama3.2" if "llama" in shipped else "tiny-qwen3"))
    ours = _render(tokenizer, (PACKAGE_DIR / "chat_templates" / shipped).read_text(), case)
    assert ours == _render(tokenizer, (PUBLISHED / SHIPPED[shipped]).read_text(), case)
    if case == "tool call":  # every family renders the call, with its arguments, and the tool's answer
        assert '"name": "add"' in ours and '"a": 1' in ours and "It is 3." in ours, ours
    if shipped.startswith("qwen3"):  # Qwen3's template renders what its rewrite raised on
        assert not ours.startswith("raises"), ours
        assert ("<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>" in ours
                or case != "tool call")
        if case == "list content":  # not a string: rendered as empty content
            assert "<|im_start|>user\n<|im_end|>" in ours
        if case == "None content":
            assert ours.endswith("<|im_end|>\n<|im_start|>assistant\n")
    if shipped == "qwen2.5.jinja" and case != "tool call":  # Qwen2.5's concatenates: None and lists raise
        assert ours == "raises TypeError"
