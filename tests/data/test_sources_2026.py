"""The 2025-2026 sources' row functions (pure: row in, conversation or reason out) and their options, which reach the
function through ``ConvertOptions`` and are refused, in one line, by sources that do not read them."""

from __future__ import annotations

import pytest

from r1sft.data import SOURCES, RowRejected, convert, render_reply
from r1sft.data.sources_nvidia import COT_PROMPT
from r1sft.errors import R1sftError
from tests.fixtures import dataset_rows as fx
from tests.fixtures import datasets_2026 as f26


def _convert_row(source: str, row: dict, **options):
    return SOURCES[source].row_function(options)(row)


def _reason(source: str, row: dict, **options) -> str:
    with pytest.raises(RowRejected) as info:
        _convert_row(source, row, **options)
    return info.value.reason


# ---- nemotron ---------------------------------------------------------------------------------------------------------

def test_nemotron_modes_and_the_thinking_prompt():
    rows, _ = f26.nemotron_rows()
    on, off = rows[0], rows[3]
    conversation = _convert_row("nemotron", on)
    assert conversation.system == "" and conversation.exchanges[0][1].reasoning  # the toggle dropped by default
    assert _convert_row("nemotron", on, thinking_prompt="keep").system == "detailed thinking on"
    assert _convert_row("nemotron", off, thinking_prompt="keep").system == "detailed thinking off"
    assert _convert_row("nemotron", off).exchanges[0][1].reasoning is None
    assert _reason("nemotron", off, reasoning="on") == "reasoning_not_selected"
    assert _reason("nemotron", on, reasoning="off") == "reasoning_not_selected"
    # another system prompt than the toggle is kept, next to the toggle when that is kept too
    other = dict(on, input=[{"role": "system", "content": "Be terse."}, *on["input"]])
    assert _convert_row("nemotron", other).system == "Be terse."
    assert _convert_row("nemotron", other, thinking_prompt="keep").system == "detailed thinking on\n\nBe terse."


def test_nemotron_mode_is_inferred_when_the_reasoning_field_is_missing():
    rows, _ = f26.nemotron_rows()
    row = {k: v for k, v in rows[3].items() if k not in ("reasoning",)}  # off, by its system prompt
    assert _reason("nemotron", dict(row, output=fx.think_text("r", "a"))) == "think_when_reasoning_off"
    row = {k: v for k, v in row.items() if k != "system_prompt"}  # neither: by the output's tags
    assert _convert_row("nemotron", dict(row, output=fx.think_text("r", "a")), reasoning="on").exchanges
    assert _reason("nemotron", dict(rows[0], reasoning="maybe")) == "wrong_type"


def test_nemotron_v1_templated_input():
    rows, _ = f26.nemotron_v1_rows()
    conversation = _convert_row("nemotron", rows[0], thinking_prompt="keep")
    q, r, a = fx.problem(940)
    assert conversation.system == "detailed thinking on"
    assert conversation.exchanges[0][0] == q
    assert render_reply(conversation.exchanges[0][1], "native") == fx.think_text(r, a)  # trailing <|eot_id|> gone
    assert _convert_row("nemotron", rows[2]).exchanges[0][1].reasoning is None  # "detailed thinking off"
    assert _convert_row("nemotron", dict(rows[0], input="a question, no template")).exchanges[0][0] == \
        "a question, no template"  # a string without headers is the user turn
    assert _reason("nemotron", rows[3]) == "malformed_template"


# ---- openmath-reasoning -------------------------------------------------------------------------------------------

def test_openmath_prompt_per_mode():
    rows, _ = f26.openmath_rows()
    cot, tir, genselect = rows[0], rows[5], rows[6]
    q = fx.problem(950)[0]
    assert _convert_row("openmath-reasoning", cot).exchanges[0][0] == COT_PROMPT.format(problem=q)
    assert _convert_row("openmath-reasoning", cot).exchanges[0][0].startswith(
        "Solve the following math problem. Make sure to put the answer (and only answer) inside \\boxed{}.\n\n")
    prompt = _convert_row("openmath-reasoning", tir, mode="tir").exchanges[0][0]
    assert "You may perform up to 4 Python code calls" in prompt  # "Remaining code executions: 3." + 1
    assert prompt.endswith("inside \\boxed{}.\n\n" + fx.problem(955)[0])
    assert _convert_row("openmath-reasoning", genselect, mode="genselect").exchanges[0][0] == fx.problem(956)[0]
    assert _reason("openmath-reasoning", tir) == "mode_not_selected"
    ran_out = dict(tir, generated_solution=fx.think_text("r", "You have run out of code executions! 2"))
    assert "up to 1 Python" in _convert_row("openmath-reasoning", ran_out, mode="tir").exchanges[0][0]


def test_openmath_filters():
    rows, _ = f26.openmath_rows()
    assert _reason("openmath-reasoning", rows[0], min_pass_rate=0.5) == "low_pass_rate"  # "0.25"
    assert _reason("openmath-reasoning", rows[1], min_pass_rate=0.5) == "no_pass_rate"  # "n/a"
    assert _convert_row("openmath-reasoning", rows[2], min_pass_rate=0.5).exchanges  # "0.875"
    assert _convert_row("openmath-reasoning", dict(rows[2], pass_rate_72b_tir=0.9), min_pass_rate=0.5).exchanges
    assert _reason("openmath-reasoning", rows[4], drop_proofs=True) == "proof"
    assert _convert_row("openmath-reasoning", rows[4]).exchanges  # kept unless asked
    no_mode = {k: v for k, v in rows[0].items() if k != "inference_mode"}
    assert _convert_row("openmath-reasoning", no_mode, mode="cot").exchanges  # a split file without the column


# ---- am-r1-distilled, s1k ---------------------------------------------------------------------------------------------

def test_am_prefers_inline_reasoning_and_falls_back_to_info():
    q, r, a = fx.problem(1)
    info = {"think_content": "from info", "answer_content": "info answer"}
    turns = [{"role": "user", "content": q}]
    inline = _convert_row("am-r1-distilled", {"messages": [
        *turns, {"role": "assistant", "content": f"<think>\n{r}\n</think>\n<answer>{a}</answer>", "info": info}]})
    assert (inline.exchanges[0][1].reasoning, inline.exchanges[0][1].answer) == (r, a)
    fallback = _convert_row("am-r1-distilled", {"messages": [*turns, {"role": "assistant", "content": "<think>\n\n</think>x",
                                                                      "info": info}]})
    assert (fallback.exchanges[0][1].reasoning, fallback.exchanges[0][1].answer) == ("from info", "info answer")
    nested = {"messages": [*turns, {"role": "assistant", "content": f"<think>{r}</think><answer>a <answer> b</answer>"}]}
    assert _reason("am-r1-distilled", nested) == "markup_in_text"


def test_s1k_graded_only_and_the_1_0_shape():
    rows, _ = f26.s1k_rows()
    assert _convert_row("s1k", rows[1]).exchanges  # deepseek_grade "No": kept unless --graded-only
    assert _reason("s1k", rows[1], graded_only=True) == "not_graded_correct"
    assert _convert_row("s1k", rows[0], graded_only=True).exchanges
    q, r, a = fx.problem(3)
    old = {"question": q, "solution": a, "thinking_trajectories": [r], "attempt": a, "cot_type": "math"}
    reply = _convert_row("s1k", old).exchanges[0][1]
    assert (reply.reasoning, reply.answer) == (r, a)
    assert _reason("s1k", old, graded_only=True) == "not_graded_correct"  # 1.0 has no grade
    assert _reason("s1k", dict(old, thinking_trajectories=[r, r])) == "wrong_type"


@pytest.mark.parametrize(("source", "make"), [(s, m) for s, fs in f26.SOURCES_2026.items() for m, _ in fs])
def test_a_row_of_any_other_shape_is_a_reason_never_a_crash(source, make):
    rows, _ = make()
    row = dict(rows[0])
    for key in list(row):
        for bad in (None, 7, "text", [1, 2], {"x": 1}):
            try:
                _convert_row(source, dict(row, **{key: bad}))
            except RowRejected as exc:
                assert exc.reason and exc.reason.islower()


# ---- options: flow and refusal ----------------------------------------------------------------------------------------

def test_source_options_reach_the_conversion(tmp_path):
    rows, _ = f26.nemotron_rows()
    src = fx.write_jsonl(tmp_path / "n.jsonl", rows)
    stats = convert("nemotron", src, tmp_path / "on.jsonl", reasoning="on", thinking_prompt="keep", progress=False)
    assert stats.dropped["reasoning_not_selected"] == 3  # the two off rows and the off row with tags
    assert stats.options["reasoning"] == "on" and stats.options["thinking_prompt"] == "keep"
    assert '"system":"detailed thinking on"' in (tmp_path / "on.jsonl").read_text()
    plain = convert("sharegpt", fx.write_jsonl(tmp_path / "s.jsonl", fx.sharegpt_rows()), tmp_path / "s_out.jsonl",
                    progress=False)
    assert "reasoning" not in plain.options and "mode" not in plain.options  # not given: not recorded


@pytest.mark.parametrize(("options", "needle"), [
    ({"mode": "tir"}, "--mode: an option of source openmath-reasoning, not of sharegpt"),
    ({"graded_only": True}, "--graded-only: an option of source s1k, not of sharegpt"),
    ({"reasoning": "on"}, "--reasoning: an option of source nemotron, not of sharegpt"),
])
def test_a_source_option_given_to_another_source_is_refused(tmp_path, options, needle):
    src = fx.write_jsonl(tmp_path / "s.jsonl", fx.sharegpt_rows())
    with pytest.raises(R1sftError) as info:
        convert("sharegpt", src, tmp_path / "o.jsonl", progress=False, **options)
    assert str(info.value) == needle
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize(("source", "options", "needle"), [
    ("openmath-reasoning", {"mode": "code"}, "--mode 'code': expected one of cot, tir, genselect"),
    ("openmath-reasoning", {"min_pass_rate": 1.5}, "--min-pass-rate 1.5: expected a number from 0 to 1"),
    ("nemotron", {"reasoning": "sometimes"}, "--reasoning 'sometimes': expected one of on, off, both"),
    ("nemotron", {"thinking_prompt": "maybe"}, "--thinking-prompt 'maybe': expected one of drop, keep"),
])
def test_a_bad_source_option_value_is_one_line(tmp_path, source, options, needle):
    src = fx.write_jsonl(tmp_path / "s.jsonl", fx.sharegpt_rows())
    with pytest.raises(R1sftError, match="^" + needle.replace("(", r"\(")):
        convert(source, src, tmp_path / "o.jsonl", progress=False, **options)


def test_the_cli_passes_source_options(tmp_path):
    from tests.conftest import run_cli

    rows, _ = f26.s1k_rows()
    src = fx.write_parquet(tmp_path / "s1k.parquet", rows)
    out = tmp_path / "s1k.jsonl"
    proc = run_cli("r1sft", "convert", "s1k", "--input", str(src), "--output", str(out), "--graded-only",
                   "--no-progress")
    assert "dropped        2  not_graded_correct" in proc.stdout, proc.stdout
    proc = run_cli("r1sft", "convert", "sharegpt", "--input", str(src), "--output", str(out), "--graded-only",
                   check=False)
    assert proc.returncode == 2 and proc.stderr.strip().endswith("--graded-only: an option of source s1k, not of "
                                                                 "sharegpt"), proc.stderr
