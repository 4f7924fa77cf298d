"""NVIDIA's reasoning sets: Llama-Nemotron-Post-Training (reasoning on/off per row) and OpenMathReasoning (no message
list: the prompt is built from the problem, per inference mode). Pure row functions, as in ``sources.py``.

Schemas: /work/shared/reference/datasets-2026.md (shapes it marks unconfirmed are accepted in each plausible form).
"""

from __future__ import annotations

import re

from r1sft.data.conversation import Conversation, RowRejected
from r1sft.data.reasoning import parse_reply
from r1sft.data.turns import conversation_from_turns, prompt_text, required, text

# ---- Llama-Nemotron-Post-Training ------------------------------------------------------------------------------------

THINKING_TOGGLES = {"detailed thinking on": "on", "detailed thinking off": "off"}
_HEADER_START, _HEADER_END, _EOT = "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"


def nemotron_conversation(row: dict, *, reasoning: str = "both", thinking_prompt: str = "drop") -> Conversation:
    """``input`` (message list, or the v1 Llama-3-templated string) + ``output``, one reasoning mode per row.

    The row's mode is ``reasoning`` ("on"/"off"), else its "detailed thinking on/off" system prompt, else whether the
    output has think tags. NVIDIA's own curation drops what is rejected here: an "on" row whose think block is
    empty or unclosed, an "off" row with think tags. The toggle prompt means something only to Nemotron models:
    dropped by default (Qwen and Llama templates never see it), ``thinking_prompt="keep"`` writes it, rebuilt from
    the row's mode so it always matches the output. Any other system text is kept.
    """
    raw_input = required(row, "input")
    output = text(required(row, "output"), "output")
    output = output[:-len(_EOT)] if output.endswith(_EOT) else output
    turns = _llama3_turns(raw_input) if isinstance(raw_input, str) else raw_input
    field_prompt = row.get("system_prompt")
    toggle, other = _split_toggle([text(field_prompt, "system_prompt") if field_prompt is not None else "",
                                   _leading_system(turns)])
    mode = _row_mode(row.get("reasoning"), toggle, output)
    if reasoning != "both" and mode != reasoning:
        raise RowRejected("reasoning_not_selected", f"reasoning is {mode!r}, --reasoning {reasoning}")
    if mode == "off" and ("<think>" in output or "</think>" in output):
        raise RowRejected("think_when_reasoning_off", "reasoning 'off' but the output has think tags")
    if isinstance(turns, list):
        turns = [*turns, {"role": "assistant", "content": output}]
    conversation = conversation_from_turns(turns)
    last = conversation.exchanges[-1][1]
    if mode == "on" and not last.reasoning:
        if last.reasoning is None:
            raise RowRejected("no_thought_block", "reasoning 'on' but the output has no <think> block")
        raise RowRejected("empty_reasoning", "reasoning 'on' but the <think> block is empty")
    kept = [f"detailed thinking {mode}"] if thinking_prompt == "keep" else []
    conversation.system = "\n\n".join(kept + other)
    return conversation


def _leading_system(turns) -> str:
    """The text of a leading system turn of ``input`` ("" if none; a malformed one is left to the turn parser)."""
    first = turns[0] if isinstance(turns, list) and turns else None
    if isinstance(first, dict) and (first.get("role") or first.get("from")) == "system":
        content = first.get("content", first.get("value"))
        return content if isinstance(content, str) else ""
    return ""


def _row_mode(value, toggle: str | None, output: str) -> str:
    if value is not None:
        mode = text(value, "reasoning").strip().lower()
        if mode not in ("on", "off"):
            raise RowRejected("wrong_type", f"reasoning is {value!r}, expected 'on' or 'off'")
        return mode
    if toggle is not None:
        return toggle
    return "on" if "think>" in output else "off"


def _split_toggle(prompts: list[str]) -> tuple[str | None, list[str]]:
    """(the toggle's mode if one of ``prompts`` is "detailed thinking on/off", the other non-empty prompts)."""
    toggle, other = None, []
    for prompt in prompts:
        mode = THINKING_TOGGLES.get(" ".join(prompt.lower().split()))
        if mode is not None:
            toggle = toggle or mode
        elif prompt.strip() and prompt not in other:
            other.append(prompt)
    return toggle, other


def _llama3_turns(templated: str) -> list[dict]:
    """v1's ``input``: ``<|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\n...<|eot_id|>...`` as turns.

    The trailing empty assistant header (the generation prompt) is dropped; a string without headers is one user
    turn. A segment without its end-of-header or end-of-turn marker is ``malformed_template``.
    """
    body = templated.removeprefix("<|begin_of_text|>")
    if _HEADER_START not in body:
        return [{"role": "user", "content": templated}]
    head, *segments = body.split(_HEADER_START)
    if head.strip():
        raise RowRejected("malformed_template", "text before the first <|start_header_id|> of input")
    turns = []
    for i, segment in enumerate(segments):
        role, found, rest = segment.partition(_HEADER_END)
        if not found:
            raise RowRejected("malformed_template", f"input header {i} has no <|end_header_id|>")
        content = rest.removeprefix("\n\n")
        if content.endswith(_EOT):
            content = content[:-len(_EOT)]
        elif i < len(segments) - 1 or content.strip():
            raise RowRejected("malformed_template", f"input turn {i} ({role.strip()}) has no <|eot_id|>")
        else:
            continue  # the generation prompt: "<|start_header_id|>assistant<|end_header_id|>\n\n" at the end
        turns.append({"role": role.strip(), "content": content})
    return turns


# ---- OpenMathReasoning -----------------------------------------------------------------------------------------------

# NeMo-Skills' prompt configs generic/math (cot) and openmath/tir, with the few-shot examples empty.
COT_PROMPT = ("Solve the following math problem. Make sure to put the answer (and only answer) inside \\boxed{{}}.\n\n"
              "{problem}")
TIR_PROMPT = (
    "Solve the following math problem, integrating natural language reasoning with Python code executions.\n"
    "You may perform up to {executions} Python code calls to assist your reasoning. When using python code, you must "
    "use the following format:\n```python\n# Your Python code here\n```\nand the output of the code will be displayed "
    "in the following format:\n```output\n# Code execution output will appear here\n```\n\n"
    "Make sure to put the answer (and only answer) inside \\boxed{{}}.\n\n{problem}")
OPENMATH_MODES = ("cot", "tir", "genselect")
_REMAINING = re.compile(r"Remaining code executions: (\d+)\.")
_RAN_OUT = "You have run out of code executions!"


def openmath_conversation(row: dict, *, mode: str = "cot", min_pass_rate: float | None = None,
                          drop_proofs: bool = False) -> Conversation:
    """``problem`` + ``generated_solution`` of one inference mode; the user prompt is built as NeMo-Skills builds it.

    Rows of another ``inference_mode`` (one missing is taken to be ``mode``) are ``mode_not_selected``;
    ``drop_proofs`` drops ``problem_type`` "converted_proof" (as NVIDIA's recipe does); ``min_pass_rate`` keeps rows
    whose ``pass_rate_72b_tir`` is at least that, and drops "n/a" (``no_pass_rate``). The solution may or may not open
    with ``<think>`` (unconfirmed): both parse.
    """
    row_mode = row.get("inference_mode")
    if row_mode is not None and text(row_mode, "inference_mode") != mode:
        raise RowRejected("mode_not_selected", f"inference_mode is {row_mode!r}, --mode {mode}")
    problem = prompt_text(required(row, "problem"), "problem")
    if drop_proofs and row.get("problem_type") == "converted_proof":
        raise RowRejected("proof", "problem_type converted_proof (--drop-proofs)")
    if min_pass_rate is not None:
        rate = _pass_rate(row.get("pass_rate_72b_tir"))
        if rate < min_pass_rate:
            raise RowRejected("low_pass_rate", f"pass_rate_72b_tir {rate:g} < --min-pass-rate {min_pass_rate:g}")
    solution = text(required(row, "generated_solution"), "generated_solution")
    if mode == "genselect":
        prompt = problem  # already the full selection prompt
    elif mode == "tir":
        prompt = TIR_PROMPT.format(executions=_code_executions(solution), problem=problem)
    else:
        prompt = COT_PROMPT.format(problem=problem)
    return Conversation(exchanges=[(prompt, parse_reply(solution))])


def _pass_rate(value) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise RowRejected("no_pass_rate", f"pass_rate_72b_tir is {value!r}") from None
    if value is None:
        raise RowRejected("no_pass_rate", "pass_rate_72b_tir is missing")
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:  # NaN
        raise RowRejected("no_pass_rate", f"pass_rate_72b_tir is {value!r}")
    return float(value)


def _code_executions(solution: str) -> int:
    """The prompt's "up to N Python code calls" as NeMo-Skills recovers it from the solution: the first "Remaining
    code executions: K." gives K + 1, "You have run out of code executions!" alone gives 1, neither 0."""
    found = _REMAINING.search(solution)
    if found:
        return int(found.group(1)) + 1
    return 1 if _RAN_OUT in solution else 0
