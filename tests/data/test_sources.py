"""Markup parsing and rendering, system prompts, and each source's row -> conversation function (no I/O)."""

from __future__ import annotations

import pytest

from r1sft.data import SOURCES, RowRejected, parse_reply, render_reply
from r1sft.data.reasoning import reasoning_steps
from r1sft.data.system_prompts import (
    R1_SYSTEM_PROMPT,
    R1_SYSTEM_PROMPT_LITERAL_NEWLINES,
    SystemPolicy,
    r1_prompt_variant,
)
from tests.fixtures import dataset_rows as fx

Q, R, A = fx.problem(0)


@pytest.mark.parametrize("text", [fx.stratos_text(R, A), fx.think_text(R, A), "  " + fx.think_text(R, A) + "\n",
                                  R + "\n</think>\n\n" + A])
def test_both_markups_parse_to_the_same_reasoning_and_answer(text):
    reply = parse_reply(text)
    assert (reply.reasoning, reply.answer, reply.verbatim) == (R, A, text)


def test_render_styles():
    reply = parse_reply(fx.stratos_text(R, A))
    assert render_reply(reply, "native") == f"<think>\n{R}\n</think>\n\n{A}"
    assert render_reply(reply, "keep") == fx.stratos_text(R, A)
    assert render_reply(reply, "thought") == (f"<|begin_of_thought|>\n\n{R}\n\n<|end_of_thought|>\n\n"
                                              f"<|begin_of_solution|>\n\n{A}\n\n<|end_of_solution|>")
    assert render_reply(reply, "none") == A
    # round trip: thought rendering of think-tag input is the Stratos text, and back
    assert parse_reply(render_reply(parse_reply(fx.think_text(R, A)), "thought")).reasoning == R


def test_split_think_gives_each_paragraph_its_own_block():
    reply = parse_reply(fx.think_text("Subtract 3: 2x = 4.\n\n  Divide by 2: x = 2.\n \nCheck: 2*2+3 = 7.", "x = 2"))
    assert reasoning_steps(reply.reasoning) == ["Subtract 3: 2x = 4.", "Divide by 2: x = 2.", "Check: 2*2+3 = 7."]
    assert render_reply(reply, "native", split_think=True) == (
        "<think>\nSubtract 3: 2x = 4.\n</think>\n\n<think>\nDivide by 2: x = 2.\n</think>\n\n"
        "<think>\nCheck: 2*2+3 = 7.\n</think>\n\nx = 2")
    assert render_reply(reply, "thought", split_think=True).count("<|begin_of_thought|>") == 3


def test_reply_without_markup_is_a_plain_answer_in_every_style():
    reply = parse_reply(" Hello! ")
    assert reply.reasoning is None
    assert {render_reply(reply, style) for style in ("native", "thought", "none")} == {"Hello!"}


@pytest.mark.parametrize(("text", "reason"), [
    ("<|begin_of_thought|>\n\nr\n\n<|begin_of_solution|>\n\na\n\n<|end_of_solution|>", "missing_end_tag"),
    ("<|begin_of_thought|>\n\nr\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\na", "missing_end_tag"),
    ("<|begin_of_solution|>\n\na\n\n<|end_of_solution|>", "no_thought_block"),
    ("<|begin_of_thought|>\n\nr\n\n<|end_of_thought|>\n\na", "no_solution_block"),
    ("<|begin_of_thought|>\n\nr\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n \n\n<|end_of_solution|>",
     "empty_answer"),
    ("preamble <|begin_of_thought|>\n\nr\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\na\n\n<|end_of_solution|>",
     "text_before_reasoning"),
    ("<think>\nr\n\nanswer", "unclosed_think"),
    ("</think> a <think>", "unclosed_think"),
    ("<think>\nr\n</think>\n\n", "empty_answer"),
    ("<think>a</think><think>b</think>c", "repeated_reasoning_block"),
    ("   ", "empty_answer"),
])
def test_broken_markup_is_rejected_with_its_reason(text, reason):
    with pytest.raises(RowRejected) as info:
        parse_reply(text)
    assert info.value.reason == reason


def test_empty_think_block_parses_as_empty_reasoning():
    assert parse_reply("<think>\n\n</think>\n\nfour").reasoning == ""


def test_r1_system_prompt_variants_are_recognised_and_normalised():
    assert r1_prompt_variant(R1_SYSTEM_PROMPT) == "real_newlines"
    assert r1_prompt_variant(R1_SYSTEM_PROMPT_LITERAL_NEWLINES) == "literal_backslash_n"
    assert "\\n\\n" in R1_SYSTEM_PROMPT_LITERAL_NEWLINES and "\n" not in R1_SYSTEM_PROMPT_LITERAL_NEWLINES
    assert r1_prompt_variant("You are a helpful assistant.") is None
    keep = SystemPolicy("auto", "thought")
    assert keep.apply(R1_SYSTEM_PROMPT_LITERAL_NEWLINES) == (R1_SYSTEM_PROMPT, "literal_backslash_n", "kept")
    native = SystemPolicy("auto", "native")
    assert native.apply(R1_SYSTEM_PROMPT) == ("", "real_newlines", "dropped")
    assert native.apply("Be terse.") == ("Be terse.", None, "kept")
    assert SystemPolicy("drop", "keep").apply("Be terse.") == ("", None, "dropped")
    assert SystemPolicy("keep", "native").apply(R1_SYSTEM_PROMPT)[0] == R1_SYSTEM_PROMPT
    assert SystemPolicy("Think first.", "native").apply("") == ("Think first.", None, "replaced")


def test_bundled_bespoke_sample_carries_the_literal_backslash_n_prompt():
    import json

    from r1sft.paths import SAMPLES_DIR

    row = json.loads((SAMPLES_DIR / "bespoke_stratos_sample.jsonl").read_text().splitlines()[0])
    assert row["system"] == R1_SYSTEM_PROMPT_LITERAL_NEWLINES


def _one(source: str, row: dict):
    return SOURCES[source].convert(row)


def test_stratos_family_converts_system_and_turns():
    conv = _one("bespoke-stratos", fx.bespoke_rows(1)[0])
    assert conv.system == R1_SYSTEM_PROMPT_LITERAL_NEWLINES
    (prompt, reply), = conv.exchanges
    assert prompt == fx.BOXED + Q and (reply.reasoning, reply.answer) == (R, A)


def test_openthoughts_metadata_uses_reasoning_and_solution_columns():
    (prompt, reply), = _one("openthoughts-metadata", fx.openthoughts_metadata_rows(1)[0]).exchanges
    q, r, a = fx.problem(200)
    assert (prompt, reply.reasoning, reply.answer, reply.verbatim) == (q, r, a, "")
    assert render_reply(reply, "keep") == f"<think>\n{r}\n</think>\n\n{a}"  # no source markup: keep renders native


def test_magpie_instruction_response_and_conversations_agree():
    row = fx.magpie_row(3)
    a = _one("magpie-reasoning", row)
    del row["instruction"], row["response"]
    b = _one("magpie-reasoning", row)
    assert a.exchanges[0][0] == b.exchanges[0][0]
    assert a.exchanges[0][1].answer == b.exchanges[0][1].answer


def test_openr1_takes_the_first_complete_verified_generation():
    row = fx.openr1_row(0, good_index=1)
    (_, reply), = _one("openr1-math", row).exchanges
    assert reply.answer == fx.problem(400)[2]
    row["is_reasoning_complete"] = [True, False]
    with pytest.raises(RowRejected, match="no_verified_generation"):
        _one("openr1-math", row)
    row = fx.openr1_row(0, good_index=1)
    row["finish_reasons"] = ["stop", "length"]
    with pytest.raises(RowRejected, match="no_verified_generation"):
        _one("openr1-math", row)
    row = fx.openr1_row(0, good_index=1)
    row["generations"][1] = "<think>\nunfinished"
    with pytest.raises(RowRejected, match="unclosed_think"):
        _one("openr1-math", row)
    row = fx.openr1_row(0)
    row["generations"] = "oops"
    with pytest.raises(RowRejected, match="wrong_type"):
        _one("openr1-math", row)


def test_sharegpt_dialects_and_system_turn():
    rows = fx.sharegpt_rows()
    first = _one("sharegpt", rows[0])
    assert first.system == "You are a careful solver." and len(first.exchanges) == 1
    assert len(_one("sharegpt", rows[2]).exchanges) == 2
    assert _one("sharegpt", rows[2]).system == "Answer briefly."
    assert _one("sharegpt", {"messages": rows[1]["conversations"]}).exchanges[0][1].reasoning
    with pytest.raises(RowRejected, match="roles_out_of_order"):
        _one("sharegpt", {"conversations": [{"from": "human", "value": "a"}, {"from": "system", "value": "s"},
                                            {"from": "gpt", "value": "b"}]})
    with pytest.raises(RowRejected, match="roles_out_of_order"):
        _one("sharegpt", {"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"},
                                            {"from": "gpt", "value": "c"}]})
    with pytest.raises(RowRejected, match="unsupported_role"):
        _one("sharegpt", {"conversations": [{"from": "human", "value": "a"}, {"from": "tool", "value": "b"}]})


def test_alpaca_joins_input_and_unrolls_history():
    conv = _one("alpaca", fx.alpaca_rows()[1])
    assert [p for p, _ in conv.exchanges] == [fx.problem(601)[0], "Add the numbers below.\n7 and 8"]
    assert conv.system == "You are a calculator."
    with pytest.raises(RowRejected, match="wrong_type"):
        _one("alpaca", {"instruction": "q", "output": "a", "history": [["only one"]]})


def test_openai_content_parts():
    conv = _one("openai", fx.openai_rows()[1])
    assert conv.exchanges[0][0] == fx.problem(701)[0]
    with pytest.raises(RowRejected, match="wrong_type"):
        _one("openai", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]},
                                     {"role": "assistant", "content": "a"}]})


@pytest.mark.parametrize(("row", "reason"), fx.MALFORMED_STRATOS + fx.MALFORMED_MAGPIE[4:])
def test_malformed_rows_raise_row_rejected(row, reason):
    source = "magpie-reasoning" if "instruction" in row else "bespoke-stratos"
    try:
        conv = _one(source, row)
    except RowRejected as exc:
        assert exc.reason == reason
    else:  # reasoning presence is checked by the pipeline, not the converter
        assert reason in ("no_thought_block", "empty_reasoning")
        assert not conv.exchanges[-1][1].reasoning
