"""Reasoning markup: parse an assistant turn into (reasoning, answer) once, render it in the chosen style.

Sources write the chain of thought two ways: the Stratos tags (Bespoke-Stratos, Sky-T1, OpenThoughts)
``<|begin_of_thought|>\\n\\n{r}\\n\\n<|end_of_thought|>\\n\\n<|begin_of_solution|>\\n\\n{a}\\n\\n<|end_of_solution|>``
and DeepSeek-R1's ``<think>\\n{r}\\n</think>\\n\\n{a}`` (Magpie, OpenR1, OpenThoughts3, Mixture-of-Thoughts).
Parsing is strict: a turn with broken markup raises ``RowRejected`` naming what is wrong, because a sample whose
end tag is missing teaches the model to never stop thinking. Only ``str.find`` is used: it is the hot loop.

Markup *inside* the parsed text is judged by one rule, for every source, in ``normalise_reply`` (run by
``render_reply``): a redundant outer wrapper is removed, anything else is ``markup_in_text``. Qwen3's chat template and
LLaMA-Factory's reasoning templates split at the first ``</think>``, so a literal tag in the text would train garbage.
"""

from __future__ import annotations

import re

from r1sft.data.conversation import Reply, RowRejected

BEGIN_THOUGHT = "<|begin_of_thought|>"
END_THOUGHT = "<|end_of_thought|>"
BEGIN_SOLUTION = "<|begin_of_solution|>"
END_SOLUTION = "<|end_of_solution|>"
STRATOS_TOKENS = (BEGIN_THOUGHT, END_THOUGHT, BEGIN_SOLUTION, END_SOLUTION)
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

THINK_STYLES = ("native", "keep", "thought", "none")
SPECIAL_TOKENS = {"thought": list(STRATOS_TOKENS)}  # what a style needs added to the tokenizer

MARKUP_IN_TEXT = "markup_in_text"
_STEP_BREAK = re.compile(r"\r?\n[ \t\r]*\n")  # a blank line, Windows line ends included
_MARKUP = re.compile(r"</?think>|<\|(?:begin|end)_of_(?:thought|solution)\|>")  # every tag of both markups
_SPLIT_HINT = " (--split-think output? convert the unsplit files, then pass --split-think to the run that mixes them)"


def parse_reply(text: str) -> Reply:
    """Split one assistant turn; a turn without any markup is an answer with ``reasoning=None``.

    The markup is the one the turn starts with (after whitespace): a tag of the other markup mentioned inside the text
    does not decide it (``normalise_reply`` does). A turn starting with neither is a DeepSeek-R1 output without its
    opening ``<think>`` when it has a think tag, else Stratos markup after a preamble when it has a Stratos tag.
    """
    head = text.lstrip()
    if head.startswith(THINK_OPEN):
        return _parse_think(text)
    if head.startswith("<|") and head.startswith(STRATOS_TOKENS):
        return _parse_stratos(text)
    if "think>" in text and (THINK_OPEN in text or THINK_CLOSE in text):
        return _parse_think(text)
    if _find_tag_start(text, 0) >= 0 and (BEGIN_THOUGHT in text or END_THOUGHT in text or BEGIN_SOLUTION in text
                                          or END_SOLUTION in text):
        return _parse_stratos(text)
    answer = text.strip()
    if not answer:
        raise RowRejected("empty_answer", "assistant turn is empty")
    return Reply(answer=answer, reasoning=None, verbatim=text)


def _find_tag_start(text: str, start: int) -> int:
    """``text.find("<|", start)``, ~10x faster: a one-character find is a memchr, a two-character one is not."""
    at = text.find("<", start)
    while at >= 0 and not text.startswith("|", at + 1):
        at = text.find("<", at + 1)
    return at


def _parse_stratos(text: str) -> Reply:
    begin = text.find(BEGIN_THOUGHT)
    if begin < 0:
        raise RowRejected("no_thought_block", "solution markup without <|begin_of_thought|>")
    if text[:begin].strip():
        raise RowRejected("text_before_reasoning", "text before <|begin_of_thought|>")
    start = begin + len(BEGIN_THOUGHT)
    end = start
    while True:  # one scan over the chain of thought for the next "<|" that is the end tag (others: normalise_reply)
        end = _find_tag_start(text, end)
        if end < 0:
            raise RowRejected("missing_end_tag", "<|begin_of_thought|> without <|end_of_thought|>")
        if text.startswith(END_THOUGHT, end):
            break
        end += 2
    reasoning = text[start:end].strip()
    after = end + len(END_THOUGHT)
    sol_begin = text.find(BEGIN_SOLUTION, after)
    if sol_begin < 0:
        raise RowRejected("no_solution_block", "<|end_of_thought|> not followed by <|begin_of_solution|>")
    between = text[after:sol_begin].strip()
    if between:
        if between.startswith(BEGIN_THOUGHT):
            raise RowRejected("repeated_reasoning_block", "a second thought block" + _SPLIT_HINT)
        if END_THOUGHT in between:
            raise RowRejected(MARKUP_IN_TEXT, "<|end_of_thought|> inside the thought block")
        raise RowRejected("text_outside_blocks", "text between <|end_of_thought|> and <|begin_of_solution|>")
    sol_start = sol_begin + len(BEGIN_SOLUTION)
    sol_end = text.rfind(END_SOLUTION, sol_start)  # the last one: an earlier one is text (normalise_reply rejects it)
    if sol_end < 0:
        raise RowRejected("missing_end_tag", "<|begin_of_solution|> without <|end_of_solution|>")
    if text[sol_end + len(END_SOLUTION):].strip():
        raise RowRejected("text_outside_blocks", "text after <|end_of_solution|>")
    answer = text[sol_start:sol_end].strip()
    if not answer:
        raise RowRejected("empty_answer", "empty solution block")
    return Reply(answer=answer, reasoning=reasoning, verbatim=text)


def _parse_think(text: str) -> Reply:
    open_at = text.find(THINK_OPEN)
    close_at = text.find(THINK_CLOSE)
    if close_at < 0:
        raise RowRejected("unclosed_think", "<think> without </think>")
    if open_at < 0:
        # DeepSeek-R1 outputs often omit the opening tag (its chat template adds it): unambiguous, accept it.
        start = 0
    else:
        if close_at < open_at:
            raise RowRejected("unclosed_think", "</think> before <think>")
        if text[:open_at].strip():
            raise RowRejected("text_before_reasoning", "text before <think>")
        start = open_at + len(THINK_OPEN)
    after = close_at + len(THINK_CLOSE)
    answer = text[after:].strip()
    if answer.startswith(THINK_OPEN):
        raise RowRejected("repeated_reasoning_block", "a second <think> block after </think>" + _SPLIT_HINT)
    # Other tags inside the reasoning or the answer: normalise_reply rejects them (markup_in_text).
    if not answer:
        raise RowRejected("empty_answer", "nothing after </think>")
    return Reply(answer=answer, reasoning=text[start:close_at].strip(), verbatim=text)


def reasoning_steps(reasoning: str) -> list[str]:
    """Paragraphs of a chain of thought: the unit ``--split-think`` gives a block each."""
    return [step for step in (part.strip() for part in _STEP_BREAK.split(reasoning)) if step]


def _unwrap(text: str, opener: str, closer: str) -> str | None:
    """``text`` without a trailing ``closer`` and then a leading ``opener`` (optional), stripped; None without one."""
    if not text.endswith(closer):
        return None
    text = text[:-len(closer)]
    return (text[len(opener):] if text.startswith(opener) else text).strip()


def normalise_reply(reply: Reply) -> Reply:
    """The one rule for markup left inside the parsed reasoning or answer, whatever the source.

    A redundant outer wrapper is removed where that is unambiguous: reasoning ending in ``</think>`` (or
    ``<|end_of_thought|>``), with or without its opening tag (OpenThoughts metadata ``deepseek_reasoning`` already
    wrapped), and Stratos solution markers at either end of an answer. Any markup tag still inside either is
    ``markup_in_text``: a literal ``</think>`` ends the reasoning early for every chat template that parses it.
    """
    reasoning, answer = reply.reasoning, reply.answer
    found = _MARKUP.search(answer)
    if found is not None:
        if answer.startswith(BEGIN_SOLUTION) or answer.endswith(END_SOLUTION):
            if answer.startswith(BEGIN_SOLUTION):
                answer = answer[len(BEGIN_SOLUTION):]
            answer = (_unwrap(answer, "", END_SOLUTION) if answer.endswith(END_SOLUTION) else answer).strip()
            if not answer:
                raise RowRejected("empty_answer", "empty solution block")
            found = _MARKUP.search(answer)
        if found is not None:
            raise RowRejected(MARKUP_IN_TEXT, f"{found.group()} inside the answer")
    if reasoning and (found := _MARKUP.search(reasoning)) is not None:
        inner = _unwrap(reasoning, THINK_OPEN, THINK_CLOSE)
        if inner is None:
            inner = _unwrap(reasoning, BEGIN_THOUGHT, END_THOUGHT)
        if inner is not None:
            if not inner:
                raise RowRejected("empty_reasoning", "the reasoning is an empty wrapper")
            reasoning = inner
            found = _MARKUP.search(reasoning)
        if found is not None:
            raise RowRejected(MARKUP_IN_TEXT, f"{found.group()} inside the reasoning")
    if answer is reply.answer and reasoning is reply.reasoning:
        return reply
    return Reply(answer=answer, reasoning=reasoning, verbatim=reply.verbatim)


def render_reply(reply: Reply, style: str, split_think: bool = False) -> str:
    """The assistant text in ``style``; replies without reasoning render as their answer in every style.

    Markup inside the text is normalised first (``normalise_reply``): every source goes through this one rule.
    """
    normalised = normalise_reply(reply)
    if style == "keep":
        if normalised is reply and reply.verbatim:
            return reply.verbatim
        # no source markup to keep (separate columns), or the source's text had a redundant wrapper: re-render it in
        # the markup the source used
        style = "thought" if reply.verbatim.lstrip().startswith("<|") else "native"
    reply = normalised
    reasoning = reply.reasoning
    if style == "none" or not reasoning:
        return reply.answer
    if style == "native":
        if not split_think:
            return f"<think>\n{reasoning}\n</think>\n\n{reply.answer}"  # one allocation, not four
        return "".join(f"<think>\n{step}\n</think>\n\n" for step in reasoning_steps(reasoning)) + reply.answer
    if style == "thought":
        steps = reasoning_steps(reasoning) if split_think else [reasoning]
        thoughts = "".join(f"{BEGIN_THOUGHT}\n\n{step}\n\n{END_THOUGHT}\n\n" for step in steps)
        return f"{thoughts}{BEGIN_SOLUTION}\n\n{reply.answer}\n\n{END_SOLUTION}"
    raise ValueError(f"unknown think style {style!r}")
