"""Score one generation and aggregate many: pure functions, no model, so they are unit-testable and reusable.

``is_well_formed`` is the project's definition of a well-formed reasoning generation (also used by ``make learn``):
it closes the think block when one was opened, gives an extractable answer, and stopped at the end-of-turn/EOS token
before the token limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from r1sft.evaluate.equivalence import is_equivalent
from r1sft.evaluate.extract import extract_answer, extract_gold, prompt_opens_think, think_state

# End-of-turn / end-of-text tokens of the supported families: a decoded generation that still carries one at the
# end stopped there (used when the caller does not know the finish reason).
END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<|eom_id|>", "</s>",
              "<｜end▁of▁sentence｜>")
FINISH_REASONS = ("stop", "length")


def strip_end_token(text: str) -> tuple[str, bool]:
    """Remove trailing end-of-turn tokens (and padding after them); True when there was one."""
    stripped, found = text.rstrip(), False
    changed = True
    while changed:
        changed = False
        for token in END_TOKENS:
            if stripped.endswith(token):
                stripped, found, changed = stripped[: -len(token)].rstrip(), True, True
    return (stripped if found else text), found


@dataclass(frozen=True)
class FormatCheck:
    """The parts of the well-formed definition, kept separate so reports can say which one fails."""

    think_opened: bool
    think_closed: bool
    has_answer: bool
    stopped: bool
    well_formed: bool
    answer: str | None
    answer_source: str | None


def check_format(text: str, finish_reason: str | None = None, prompt: str | None = None,
                 require_think: bool = False) -> FormatCheck:
    """Check a generation's format.

    ``finish_reason``: ``"stop"`` (ended with the end-of-turn/EOS token) or ``"length"`` (hit the token limit); when
    None it is inferred from the text, which then must end with the end token (decode with special tokens kept).
    ``prompt``: the templated prompt, so a think block opened by the chat template (R1-distill's trailing
    ``<think>\\n``) counts as opened. ``require_think``: also demand that a think block was opened at all.
    """
    body, ends_with_token = strip_end_token(text)
    if finish_reason is None:
        stopped = ends_with_token
    elif finish_reason in FINISH_REASONS:
        stopped = finish_reason == "stop"
    else:
        raise ValueError(f"finish_reason must be one of {FINISH_REASONS} or None, got {finish_reason!r}")
    opened_in_prompt = prompt_opens_think(prompt)
    state = think_state(body, opened_in_prompt)
    answer, source = extract_answer(body, opened_in_prompt)
    think_ok = (state.closed or not state.opened) and (state.opened or not require_think)
    has_answer = answer is not None
    return FormatCheck(
        think_opened=state.opened, think_closed=state.closed, has_answer=has_answer, stopped=stopped,
        well_formed=think_ok and has_answer and stopped, answer=answer, answer_source=source,
    )


def is_well_formed(text: str, finish_reason: str | None = None, prompt: str | None = None,
                   require_think: bool = False) -> bool:
    """The shared definition of a well-formed generation (see the module docstring and ``check_format``)."""
    return check_format(text, finish_reason, prompt, require_think).well_formed


def score_generation(text: str, gold: object, finish_reason: str | None = None, prompt: str | None = None,
                     num_tokens: int | None = None) -> dict:
    """Everything the report needs about one generation: extracted answer, correctness, format checks."""
    check = check_format(text, finish_reason, prompt)
    gold_answer = extract_gold(gold)
    record = asdict(check)
    record["gold"] = gold_answer
    record["correct"] = bool(check.has_answer and is_equivalent(check.answer, gold_answer))
    record["finish_reason"] = finish_reason if finish_reason is not None else ("stop" if check.stopped else "length")
    record["truncated"] = record["finish_reason"] == "length"
    record["num_tokens"] = num_tokens
    return record


def _share_closed(records: list[Mapping]) -> float | None:
    """Share of opened think blocks that were closed; None when no generation opened one."""
    opened = [r for r in records if r["think_opened"]]
    return sum(bool(r["think_closed"]) for r in opened) / len(opened) if opened else None


def aggregate(records: Iterable[Mapping]) -> dict:
    """Report metrics from per-sample records (each with ``index``, ``correct``, ``well_formed``, ...).

    accuracy: pass@1 averaged over the samples of each problem, then over problems. pass_at_n: share of problems with
    at least one correct sample. Rates are over all generations. mean_generated_tokens counts the stop token.
    """
    records = list(records)
    by_problem: dict[object, list[Mapping]] = {}
    for record in records:
        by_problem.setdefault(record["index"], []).append(record)

    def share(key: str) -> float:
        return sum(bool(r[key]) for r in records) / len(records) if records else 0.0

    lengths = [r["num_tokens"] for r in records if r.get("num_tokens") is not None]
    per_problem = [sum(bool(r["correct"]) for r in rs) / len(rs) for rs in by_problem.values()]
    return {
        "num_problems": len(by_problem),
        "num_generations": len(records),
        "accuracy": sum(per_problem) / len(per_problem) if per_problem else 0.0,
        "pass_at_n": sum(any(r["correct"] for r in rs) for rs in by_problem.values()) / len(by_problem)
        if by_problem else 0.0,
        "format_compliance": share("well_formed"),
        "think_closed_rate": _share_closed(records),
        "answer_rate": share("has_answer"),
        "stop_rate": share("stopped"),
        "truncated_rate": share("truncated"),
        "mean_generated_tokens": sum(lengths) / len(lengths) if lengths else 0.0,
    }
