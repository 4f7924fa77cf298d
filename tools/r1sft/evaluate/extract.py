"""Find the final answer in a generation.

Order (first hit wins; documented in docs/eval.md):

1. ``boxed``: the last complete ``\\boxed{...}`` / ``\\boxed {...}`` / ``\\fbox{...}`` (balanced braces, escaped
   ``\\{ \\}`` ignored) or ``\\boxed 5``, searched in the answer region (below); when the think block was opened and
   never closed, in the whole text, because a truncated generation has no answer region.
2. ``answer_phrase``: the last "answer is X" / "Answer: X" / "final answer: X" in the answer region.
3. ``answer_text``: the answer region itself when it is a bare answer: one short line that is a single word
   (``Monday``) or has no words besides LaTeX commands and one-letter variables (``42``, ``x = 3``, ``\frac{1}{2}``).
4. ``last_number``: the last number in the answer region.

The answer region is the text after the last think-closing tag (``</think>`` or ``<|end_of_thought|>``), narrowed to
``<|begin_of_solution|> ... <|end_of_solution|>`` when those tags are present; the whole text when no think block was
opened. Steps 2-4 never look inside an unclosed think block: a model that ran out of tokens mid-thought gave no answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# (open, close) pairs of reasoning markup: R1/Qwen3 style and the Sky-T1/Bespoke/OpenThoughts style.
THINK_TAGS = (("<think>", "</think>"), ("<|begin_of_thought|>", "<|end_of_thought|>"))
SOLUTION_TAGS = ("<|begin_of_solution|>", "<|end_of_solution|>")

_BOX_START = re.compile(r"\\(?:boxed|fbox)\s*")
_ANSWER_PHRASE = re.compile(
    r"\b(?:final\s+answer|answer)\s*(?:is\b|:|=)\s*:?\s*(.+?)(?:\s*(?:\.\s|\.$|\n|$))", re.IGNORECASE
)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
SHORT_ANSWER_CHARS = 40


@dataclass(frozen=True)
class ThinkState:
    """Whether the generation (with its prompt) opened and closed a think block, and where the answer region is."""

    opened: bool
    closed: bool
    answer_region: str


def prompt_opens_think(prompt: str | None) -> bool:
    """True when the prompt ends inside an open think block (R1-distill templates end the prompt with ``<think>``)."""
    if not prompt:
        return False
    return any(prompt.rfind(open_) > prompt.rfind(close) for open_, close in THINK_TAGS)


def think_state(text: str, opened_in_prompt: bool = False) -> ThinkState:
    """Locate the think block of ``text``; ``opened_in_prompt`` when the chat template already emitted the opener."""
    opened, closed, close_end = opened_in_prompt, False, 0
    for open_, close in THINK_TAGS:
        if open_ in text:
            opened = True
        pos = text.rfind(close)
        if pos >= 0:
            opened = closed = True  # a close tag implies an opening, even one the template emitted
            close_end = max(close_end, pos + len(close))
    if opened and not closed:
        return ThinkState(True, False, "")
    region = text[close_end:]
    begin, end = SOLUTION_TAGS
    if begin in region:
        region = region[region.rfind(begin) + len(begin):]
        region = region.split(end, 1)[0]
    return ThinkState(opened, closed, region.strip())


def _braced(text: str, start: int) -> str | None:
    """Content of the brace group opening at ``text[start] == '{'``; None when it never closes (truncated text)."""
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char == "\\":  # \{ and \} are literal braces in LaTeX, \\ is a line break: skip the escaped character
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i]
        i += 1
    return None


def extract_boxed(text: str | None) -> str | None:
    """The content of the last complete ``\\boxed{}`` (or ``\\fbox{}``, ``\\boxed {}``, ``\\boxed 5``) in ``text``.

    Nested braces are balanced; an unclosed last box (cut off by the token limit) is skipped in favour of the one
    before it; empty boxes count as no box.
    """
    if not text:
        return None
    for match in reversed(list(_BOX_START.finditer(text))):
        end = match.end()
        if end < len(text) and text[end] == "{":
            content = _braced(text, end)
        elif match.group(0) != match.group(0).rstrip():  # "\boxed 5": one token, TeX's undelimited argument
            token = re.match(r"[^\s$}]+", text[end:])
            content = token.group(0) if token else None
        else:
            content = None  # "\boxedx" or "\boxed" at the very end
        if content is not None and content.strip():
            return content.strip()
    return None


def _clean_phrase(answer: str) -> str:
    answer = answer.strip().strip("*").strip()
    if answer.startswith("$") and answer.endswith("$") and len(answer) > 1:
        answer = answer.strip("$").strip()
    return answer.rstrip(".").strip()


def _is_bare_answer(region: str) -> bool:
    """A short line that is an answer by itself, not a sentence ("I am not sure.", "So x = 12")."""
    if not region or "\n" in region or len(region) > SHORT_ANSWER_CHARS:
        return False
    if re.fullmatch(r"[A-Za-z]+\.?", region):
        return True
    return re.search(r"[A-Za-z]{2,}", re.sub(r"\\[A-Za-z]+", " ", region)) is None


def extract_answer(text: str | None, opened_in_prompt: bool = False) -> tuple[str | None, str | None]:
    """``(answer, source)`` where source is ``boxed``, ``answer_phrase``, ``answer_text``, ``last_number`` or None."""
    if not text:
        return None, None
    state = think_state(text, opened_in_prompt)
    if state.opened and not state.closed:
        boxed = extract_boxed(text)
        return (boxed, "boxed") if boxed is not None else (None, None)
    region = state.answer_region
    boxed = extract_boxed(region)
    if boxed is not None:
        return boxed, "boxed"
    phrases = [_clean_phrase(m.group(1)) for m in _ANSWER_PHRASE.finditer(region)]
    phrases = [p for p in phrases if p]
    if phrases:
        return phrases[-1], "answer_phrase"
    if _is_bare_answer(region):
        return _clean_phrase(region), "answer_text"
    numbers = _NUMBER.findall(region)
    if numbers:
        return numbers[-1].rstrip(","), "last_number"
    return None, None


def extract_gold(answer: object) -> str:
    """Normalise a reference answer cell: a full solution's last ``\\boxed{}``, GSM8K's ``#### 72``, or the value."""
    if isinstance(answer, bool):  # bool is an int subclass; a True/False answer is text
        return str(answer)
    if isinstance(answer, float) and answer.is_integer():
        return str(int(answer))
    text = str(answer).strip()
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    if "####" in text:
        return text.rsplit("####", 1)[1].strip()
    return text
