"""Markup inside the text (one rule for every source), dispatch on the leading markup, boilerplate-aware hygiene,
Magpie's ``conversations`` fallback and what ``--split-think`` output is as input."""

from __future__ import annotations

import json

import pytest

from r1sft.data import SOURCES, RowRejected, convert, parse_reply, render_reply
from r1sft.data.conversation import Reply
from tests.fixtures import dataset_rows as fx

LITERAL = "The user asks about <think> and </think> tags. I recall <think>."


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _rejects(out):
    return [json.loads(line) for line in out.with_name(out.stem + ".rejects.jsonl").read_text().splitlines()]


def _stratos(question: str, assistant: str) -> dict:
    row = fx.stratos_row(0)
    row["conversations"] = [{"from": "user", "value": question}, {"from": "assistant", "value": assistant}]
    return row


def _magpie(question: str, response: str, i: int = 0) -> dict:
    row = fx.magpie_row(i)
    row["instruction"] = question
    row["response"] = response
    row["conversations"] = [{"from": "human", "value": question}, {"from": "gpt", "value": response}]
    return row


def _reason(exc_info) -> str:
    return exc_info.value.reason


# ---- 1. one rule for markup inside the text, whatever the source -------------------------------------------------

@pytest.mark.parametrize("style", ["native", "keep", "thought", "none"])
def test_literal_think_tags_are_rejected_alike_from_stratos_and_think_markup(style):
    for text in (fx.stratos_text(LITERAL, "It is not a standard tag."), fx.think_text(LITERAL, "It is not a tag."),
                 fx.stratos_text("reason", "Use </think> to close."),
                 fx.stratos_text("foo <|begin_of_thought|> bar", "x")):
        with pytest.raises(RowRejected) as info:
            render_reply(parse_reply(text), style)
        assert _reason(info) == "markup_in_text", text


def test_nested_markup_end_to_end_same_reason_for_every_source(tmp_path):
    stratos = [fx.stratos_row(0), _stratos("Explain the <think> tag", fx.stratos_text(LITERAL, "Not standard.")),
               _stratos("Close?", fx.stratos_text("reason", "Use </think> to close.")),
               _stratos("Nested", fx.stratos_text("the <|end_of_thought|> tag ends it", "x"))]
    out = tmp_path / "bs.jsonl"
    stats = convert("bespoke-stratos", fx.write_jsonl(tmp_path / "bs_in.jsonl", stratos), out, progress=False)
    assert stats.rows_out == 1 and stats.dropped == {"markup_in_text": 3}
    assert _rows(out)[0]["conversations"][1]["value"].count("<think>") == 1
    magpie = [fx.magpie_row(0), _magpie("Explain the <think> tag", fx.think_text(LITERAL, "Not standard."), 1),
              _magpie("Close?", fx.think_text("reason", "Use </think> to close."), 2)]
    out = tmp_path / "mag.jsonl"
    stats = convert("magpie-reasoning", fx.write_jsonl(tmp_path / "m_in.jsonl", magpie), out, progress=False)
    assert stats.rows_out == 1 and stats.dropped == {"markup_in_text": 2}
    assert [r["row"] for r in _rejects(out)] == [1, 2]


def test_openthoughts_metadata_redundant_wrappers_are_removed_and_leftovers_rejected(tmp_path):
    rows = fx.openthoughts_metadata_rows(5)
    q1, r1, a1 = fx.problem(201)
    rows[1]["deepseek_reasoning"] = f"<think>\n{r1}\n</think>"
    q2, r2, a2 = fx.problem(202)
    rows[2]["deepseek_solution"] = f"<|begin_of_solution|>\n\n{a2}\n\n<|end_of_solution|>"
    rows[3]["deepseek_reasoning"] = "<think>\nfirst\n</think>\n\n<think>\nsecond\n</think>"  # not one wrapper
    rows[4]["deepseek_reasoning"] = "<think>\n\n</think>"
    out = tmp_path / "otm.jsonl"
    stats = convert("openthoughts-metadata", fx.write_parquet(tmp_path / "m.parquet", rows), out, progress=False)
    assert stats.dropped == {"markup_in_text": 1, "empty_reasoning": 1}
    replies = [r["conversations"][1]["value"] for r in _rows(out)]
    assert replies[1:] == [f"<think>\n{r1}\n</think>\n\n{a1}", f"<think>\n{r2}\n</think>\n\n{a2}"]
    # the same rule for a parsed reply: a wrapper inside Stratos reasoning goes; `keep` re-renders in Stratos markup
    reply = parse_reply(fx.stratos_text(f"<think>\n{r1}\n</think>", a1))
    assert render_reply(reply, "native") == f"<think>\n{r1}\n</think>\n\n{a1}"
    assert render_reply(reply, "keep") == fx.stratos_text(r1, a1)
    assert render_reply(Reply(answer="<|begin_of_solution|>\n\nz"), "none") == "z"
    with pytest.raises(RowRejected, match="empty_answer"):
        render_reply(Reply(answer="<|begin_of_solution|>\n\n<|end_of_solution|>", reasoning="r"), "native")


def test_clean_replies_render_unchanged_in_every_style():
    reply = parse_reply(fx.stratos_text(fx.problem(0)[1], fx.problem(0)[2]))
    for style in ("native", "keep", "thought", "none"):
        assert "<think>\n<think>" not in render_reply(reply, style)
    assert render_reply(reply, "keep") == reply.verbatim


# ---- 2. dispatch on what the reply starts with ---------------------------------------------------------------------

def test_think_reply_mentioning_a_stratos_tag_is_parsed_as_think_then_judged_by_the_rule():
    text = "<think>\nI could use <|begin_of_thought|> here\n</think>\n\nok"
    reply = parse_reply(text)
    assert (reply.reasoning, reply.answer) == ("I could use <|begin_of_thought|> here", "ok")
    with pytest.raises(RowRejected) as info:
        render_reply(reply, "native")
    assert _reason(info) == "markup_in_text"
    # the same for DeepSeek-R1 output without its opening tag, and Stratos markup mentioning a think tag
    assert parse_reply("I could use <|end_of_solution|>\n</think>\n\nok").answer == "ok"
    assert parse_reply(fx.stratos_text("a <think> tag", "x")).reasoning == "a <think> tag"
    with pytest.raises(RowRejected) as info:
        parse_reply("preamble " + fx.stratos_text("r", "a"))
    assert _reason(info) == "text_before_reasoning"


def test_magpie_row_with_a_stratos_tag_inside_think_is_markup_in_text(tmp_path):
    rows = [_magpie("stratos inside think", "<think>\nI could use <|begin_of_thought|> here\n</think>\n\nok")]
    out = tmp_path / "o.jsonl"
    stats = convert("magpie-reasoning", fx.write_jsonl(tmp_path / "m.jsonl", rows), out, progress=False,
                    allow_empty=True)  # the one row is dropped: the rejects are what is checked
    assert stats.dropped == {"markup_in_text": 1}


# ---- 3./4. boilerplate-aware near dedupe and decontamination -------------------------------------------------------

def _short_math(n: int, prefix: str = fx.BOXED) -> list[dict]:
    rows = []
    for i in range(n):
        row = fx.stratos_row(i)
        row["conversations"][0]["value"] = prefix + f"Compute $\\dbinom{{{1000 + 37 * i}}}{{3}}$."
        rows.append(row)
    return rows


def test_near_dedupe_keeps_distinct_short_problems_behind_the_stratos_prefix(tmp_path):
    rows = _short_math(300)
    out = tmp_path / "sm.jsonl"
    stats = convert("bespoke-stratos", fx.write_jsonl(tmp_path / "sm_in.jsonl", rows), out, dedupe="near",
                    progress=False)
    assert (stats.rows_out, dict(stats.dropped)) == (300, {})


def test_near_dedupe_still_catches_edits_and_the_same_short_problem_with_or_without_the_prefix(tmp_path):
    long = ("A farmer has a rectangular field that is 120 meters long and 80 meters wide. He wants to build a fence "
            "around the whole field and put a gate on the shorter side. How many meters of fence does he need?")
    rows = _short_math(3) + _short_math(1, prefix="") + [
        _stratos(fx.BOXED + long, fx.stratos_text("r", "a")),
        _stratos(fx.BOXED + long.replace("farmer", "gardener"), fx.stratos_text("r", "a")),
        _stratos(long.replace("120", "130"), fx.stratos_text("r", "a"))]
    out = tmp_path / "n.jsonl"
    stats = convert("bespoke-stratos", fx.write_jsonl(tmp_path / "n_in.jsonl", rows), out, dedupe="near", seed=1,
                    progress=False)
    assert stats.rows_out == 4 and stats.dropped == {"near_duplicate": 3}
    assert [r["row"] for r in _rejects(out)] == [3, 5, 6]


def test_decontaminate_short_problems_behind_the_prefix_and_livecodebench(tmp_path):
    math = fx.write_jsonl(tmp_path / "math500.jsonl", [
        {"problem": "Compute $\\dbinom{31}{28}$.", "answer": "4495", "subject": "Counting & Probability", "level": 2,
         "unique_id": "test/counting_and_probability/1.json"}])
    lcb = fx.write_jsonl(tmp_path / "lcb.jsonl", [
        {"question_title": "count-pairs", "question_content": "Given an array of integers nums return the number of "
         "pairs i < j such that nums[i] + nums[j] is even.", "platform": "leetcode", "question_id": "1",
         "contest_id": "weekly-1", "contest_date": "2024-01-01T00:00:00", "starter_code": "", "difficulty": "easy",
         "public_test_cases": "[]", "private_test_cases": "", "metadata": "{}"}])
    code = ("Generate an executable Python function generated from the given prompt. Return the function body without "
            "invoking it at the final solution.Given an array of integers nums return the number of pairs i < j "
            "such that nums[i] + nums[j] is even.")
    rows = [_stratos(fx.BOXED + "Compute $\\dbinom{31}{28}$.", fx.stratos_text("r", "a")),
            _stratos(fx.BOXED + "Compute $\\dbinom{31}{27}$.", fx.stratos_text("r", "a")),
            _stratos(code, fx.stratos_text("r", "a"))]
    out = tmp_path / "c.jsonl"
    stats = convert("bespoke-stratos", fx.write_jsonl(tmp_path / "c_in.jsonl", rows), out,
                    decontaminate=[str(math), str(lcb)], progress=False)
    assert stats.rows_out == 1 and stats.dropped == {"contaminated": 2}
    assert [(r["row"], r["detail"].rsplit(" ", 1)[-1]) for r in _rejects(out)] == [(0, "math500.jsonl"),
                                                                                   (2, "lcb.jsonl")]


# ---- 5. Magpie: null response, usable conversations -----------------------------------------------------------------

def test_magpie_null_response_falls_back_to_conversations():
    row = fx.magpie_row(4)
    row["response"] = None
    (prompt, reply), = SOURCES["magpie-reasoning"].convert(row).exchanges
    q, r, a = fx.problem(304)
    assert (prompt, reply.reasoning, reply.answer) == (q, r, a)
    del row["conversations"]
    with pytest.raises(RowRejected, match="missing_field: 'response'"):
        SOURCES["magpie-reasoning"].convert(row)


# ---- 6. --split-think output as input -------------------------------------------------------------------------------

def test_split_think_output_is_rejected_with_a_hint_and_splitting_at_the_mix_gives_the_same_file(tmp_path):
    src = fx.write_jsonl(tmp_path / "b.jsonl", fx.bespoke_rows(3))
    split = tmp_path / "split.jsonl"
    convert("bespoke-stratos", src, split, split_think=True, progress=False)
    again = tmp_path / "again.jsonl"
    stats = convert("sharegpt", split, again, progress=False, allow_empty=True)  # every row is rejected
    assert stats.dropped == {"repeated_reasoning_block": 3}
    assert "--split-think" in _rejects(again)[0]["detail"]
    # what docs/data.md says to do instead: mix the unsplit files and split in the mixing run
    plain = tmp_path / "plain.jsonl"
    convert("bespoke-stratos", src, plain, progress=False)
    mixed = tmp_path / "mixed.jsonl"
    convert("sharegpt", plain, mixed, split_think=True, progress=False)
    assert mixed.read_bytes() == split.read_bytes()
    # thought-style split blocks are the same case
    with pytest.raises(RowRejected, match="repeated_reasoning_block"):
        parse_reply(render_reply(parse_reply(fx.stratos_text("a\n\nb", "c")), "thought", split_think=True))
