"""Every supported dataset, declared once: a pure function from a source row to a ``Conversation`` plus its columns.

A converter never does I/O and never counts anything: it returns a conversation or raises ``RowRejected(reason)``.
Readers, hygiene filters, rendering, registration and reporting are shared (see ``pipeline.py``). Adding a dataset
means adding one function (often reusing ``conversation_from_turns``) and one ``SOURCES`` entry. A source with its
own options (``--mode`` and the like) names them in ``Source.options``; they are ``ConvertOptions`` fields declared in
``SOURCE_OPTIONS`` and reach the function as keyword arguments, so it stays a pure function of the row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from r1sft.data.conversation import Conversation, Reply, RowRejected
from r1sft.data.reasoning import parse_reply
from r1sft.data.sources_nvidia import OPENMATH_MODES, nemotron_conversation, openmath_conversation
from r1sft.data.turns import conversation_from_turns, optional_text, prompt_text, required, text
from r1sft.errors import R1sftError


@dataclass(frozen=True)
class Source:
    """How to read one dataset.

    ``column_sets``: alternative sets of required columns (a row must have every column of at least one set);
    ``optional_columns``: read when present. ``reasoning_required``: the last reply must carry a non-empty chain of
    thought (R1-style datasets; generic formats may mix in plain answers). ``quality_column`` feeds
    ``--min-quality``. ``hub_id``/``hub_subset``: what ``--input`` defaults to. ``options``: the ``SOURCE_OPTIONS``
    this source's function takes as keyword arguments (given ones only: the function owns the defaults).
    """

    convert: Callable[[dict], Conversation]
    column_sets: tuple[tuple[str, ...], ...]
    description: str
    optional_columns: tuple[str, ...] = ()
    reasoning_required: bool = False
    quality_column: str | None = None
    hub_id: str | None = None
    hub_subset: str | None = None
    needs_field_map: bool = False
    options: tuple[str, ...] = ()

    def row_function(self, values: dict) -> Callable[[dict], Conversation]:
        """``convert`` with this source's options from ``values`` (a ``ConvertOptions`` as a dict) bound."""
        bound = {name: values[name] for name in self.options if values.get(name) is not None}
        return functools.partial(self.convert, **bound) if bound else self.convert

    def columns(self) -> set[str]:
        return {c for cols in self.column_sets for c in cols} | set(self.optional_columns)

    def missing_columns(self, present: Iterable[str]) -> list[str] | None:
        """None when ``present`` satisfies a column set, else the columns of the closest set that are missing."""
        present = set(present)
        best = None
        for cols in self.column_sets:
            missing = [c for c in cols if c not in present]
            if not missing:
                return None
            if best is None or len(missing) < len(best):
                best = missing
        return best


@dataclass(frozen=True)
class SourceOption:
    """A ``ConvertOptions`` field that only some sources read: its CLI flag and the values it accepts."""

    flag: str
    choices: tuple = ()
    check: Callable[[object], bool] | None = None  # for open ranges: True when the value is acceptable
    expected: str = ""  # what ``check`` wants, for the error message


def _fraction(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1


SOURCE_OPTIONS = {
    "reasoning": SourceOption("--reasoning", ("on", "off", "both")),
    "thinking_prompt": SourceOption("--thinking-prompt", ("drop", "keep")),
    "mode": SourceOption("--mode", OPENMATH_MODES),
    "min_pass_rate": SourceOption("--min-pass-rate", check=_fraction, expected="a number from 0 to 1"),
    "drop_proofs": SourceOption("--drop-proofs", (True, False)),
    "graded_only": SourceOption("--graded-only", (True, False)),
}


# ---- one converter per shape ---------------------------------------------------------------------------------------

def stratos_conversation(row: dict) -> Conversation:
    """Bespoke-Stratos, Sky-T1, OpenThoughts (default): ``system`` + ``conversations`` of user/assistant turns."""
    return conversation_from_turns(required(row, "conversations"), system=optional_text(row, "system"))


def openthoughts_metadata_conversation(row: dict) -> Conversation:
    """OpenThoughts metadata config: reasoning and solution are separate plain-text columns."""
    problem = prompt_text(required(row, "problem"), "problem")
    reasoning = text(required(row, "deepseek_reasoning"), "deepseek_reasoning").strip()
    answer = text(required(row, "deepseek_solution"), "deepseek_solution").strip()
    if not answer:
        raise RowRejected("empty_answer", "deepseek_solution is empty")
    return Conversation(exchanges=[(problem, Reply(answer=answer, reasoning=reasoning))])


def magpie_conversation(row: dict) -> Conversation:
    """Magpie-Reasoning-V2: ``instruction``/``response`` (preferred) or ``conversations`` of human/gpt turns.

    ``conversations`` is used when ``instruction`` or ``response`` is null and it is there: it carries the same text.
    """
    instruction, response = row.get("instruction"), row.get("response")
    if (instruction is None or response is None) and row.get("conversations") is not None:
        return conversation_from_turns(row["conversations"])
    instruction = prompt_text(required(row, "instruction"), "instruction")
    return Conversation(exchanges=[(instruction, parse_reply(text(required(row, "response"), "response")))])


def openr1_conversation(row: dict) -> Conversation:
    """OpenR1-Math shape: the first generation that is complete and verified correct (one sample per problem).

    A generation counts when ``correctness_math_verify[i]`` is true, ``is_reasoning_complete[i]`` (if present) is
    true and ``finish_reasons[i]`` (if present) is "stop" or null. Later good generations are ignored: several
    near-identical solutions of one problem would overweight it.
    """
    problem = prompt_text(required(row, "problem"), "problem")
    generations = required(row, "generations")
    verified = required(row, "correctness_math_verify")
    complete = row.get("is_reasoning_complete")
    finish = row.get("finish_reasons")
    for name, value in (("generations", generations), ("correctness_math_verify", verified),
                        ("is_reasoning_complete", complete), ("finish_reasons", finish)):
        if value is not None and not isinstance(value, list):
            raise RowRejected("wrong_type", f"{name} is {type(value).__name__}, expected a list")
    first_defect: RowRejected | None = None
    for i, generation in enumerate(generations):
        if not (i < len(verified) and verified[i] is True):
            continue
        if complete is not None and not (i < len(complete) and complete[i] is True):
            continue
        if finish is not None and i < len(finish) and finish[i] not in (None, "stop"):
            continue
        try:
            reply = parse_reply(text(generation, f"generations[{i}]"))
            if not reply.reasoning:
                raise RowRejected("no_thought_block" if reply.reasoning is None else "empty_reasoning",
                                  f"generations[{i}]")
        except RowRejected as exc:
            first_defect = first_defect or exc
            continue
        return Conversation(exchanges=[(problem, reply)])
    if first_defect is not None:
        raise first_defect
    raise RowRejected("no_verified_generation", "no generation is complete and verified correct")


def sharegpt_conversation(row: dict) -> Conversation:
    """Generic ShareGPT/OpenAI-ish: ``conversations`` or ``messages``, optional ``system`` column."""
    turns = row.get("conversations")
    if turns is None:
        turns = required(row, "messages")
    return conversation_from_turns(turns, system=optional_text(row, "system"))


def openai_conversation(row: dict) -> Conversation:
    """OpenAI chat format: ``messages`` of role/content, system message inside."""
    return conversation_from_turns(required(row, "messages"))


def alpaca_conversation(row: dict) -> Conversation:
    """Alpaca: ``instruction`` (+ ``input``, joined with a newline as LLaMA-Factory does), ``output``,
    ``system``, ``history`` ([[prompt, response], ...] before this exchange)."""
    instruction = text(required(row, "instruction"), "instruction")
    extra = optional_text(row, "input")
    prompt = instruction + "\n" + extra if instruction and extra else instruction or extra
    if not prompt.strip():
        raise RowRejected("empty_prompt", "instruction and input are empty")
    exchanges = []
    history = row.get("history") or []
    if not isinstance(history, list):
        raise RowRejected("wrong_type", f"history is {type(history).__name__}, expected a list of pairs")
    for i, pair in enumerate(history):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise RowRejected("wrong_type", f"history[{i}] is not a [prompt, response] pair")
        exchanges.append((prompt_text(pair[0], f"history[{i}][0]"), parse_reply(text(pair[1], f"history[{i}][1]"))))
    reply = parse_reply(text(required(row, "output"), "output"))
    reasoning = optional_text(row, "reasoning").strip()  # a separate chain-of-thought column (--map COL=reasoning)
    if reasoning:
        if reply.reasoning is not None:
            raise RowRejected("repeated_reasoning_block", "the output has a reasoning block and so has the reasoning "
                                                          "column")
        reply = Reply(answer=reply.answer, reasoning=reasoning)
    exchanges.append((prompt, reply))
    return Conversation(exchanges=exchanges, system=optional_text(row, "system"))


def am_conversation(row: dict) -> Conversation:
    """AM-DeepSeek-R1-Distilled (``messages`` role/content) and AM-Thinking-v1 (``conversations`` from/value, optional
    ``system``): assistant turns carry the reasoning inline (``<think>...</think>\n<answer>...</answer>``) and split
    in ``info`` (``think_content``/``answer_content``); which is filled varies by row, see ``_am_reply``."""
    turns = row.get("messages")
    if turns is None:
        turns = required(row, "conversations")
    return conversation_from_turns(turns, system=optional_text(row, "system"), reply_of=_am_reply)


def _am_reply(turn: dict, content: str) -> Reply:
    """The inline text when it parses with reasoning (``<answer>`` wrapper removed); else ``info``'s two fields when
    both are text; else the inline text as a plain answer; else the reason the inline text failed."""
    failure = None
    reply = None
    if content.strip():
        try:
            reply = _unwrap_answer(parse_reply(content))
            if reply.reasoning:
                return reply
        except RowRejected as exc:
            failure = exc
    info = turn.get("info")
    if isinstance(info, dict):
        think, answer = info.get("think_content"), info.get("answer_content")
        if isinstance(think, str) and isinstance(answer, str) and answer.strip():
            return _unwrap_answer(Reply(answer=answer.strip(), reasoning=think.strip()))
    if reply is not None:
        return reply
    raise failure or RowRejected("empty_answer", "assistant turn is empty and info has no think/answer content")


def _unwrap_answer(reply: Reply) -> Reply:
    answer = reply.answer
    if answer.startswith("<answer>") and answer.endswith("</answer>"):
        answer = answer[len("<answer>"):-len("</answer>")].strip()
        if not answer:
            raise RowRejected("empty_answer", "empty <answer> block")
    if "<answer>" in answer or "</answer>" in answer:
        raise RowRejected("markup_in_text", "<answer> tag inside the answer")
    return Reply(answer=answer, reasoning=reply.reasoning, verbatim=reply.verbatim)


def s1k_conversation(row: dict, *, graded_only: bool = False) -> Conversation:
    """s1K-1.1: ``question``, ``deepseek_thinking_trajectory`` (reasoning), ``deepseek_attempt`` (answer),
    ``deepseek_grade`` ("Yes"/"No"); ``graded_only`` keeps the "Yes" rows. s1K 1.0's ``thinking_trajectories`` (a
    list of one) and ``attempt`` are read when the deepseek columns are absent (ungraded)."""
    question = prompt_text(required(row, "question"), "question")
    if "deepseek_thinking_trajectory" in row or "deepseek_attempt" in row:
        reasoning = text(required(row, "deepseek_thinking_trajectory"), "deepseek_thinking_trajectory")
        answer = text(required(row, "deepseek_attempt"), "deepseek_attempt")
        grade = row.get("deepseek_grade")
    else:
        trajectories = required(row, "thinking_trajectories")
        if isinstance(trajectories, list):
            if len(trajectories) != 1:
                raise RowRejected("wrong_type", f"thinking_trajectories has {len(trajectories)} entries, expected 1")
            trajectories = trajectories[0]
        reasoning = text(trajectories, "thinking_trajectories")
        answer = text(required(row, "attempt"), "attempt")
        grade = None
    if graded_only and not (isinstance(grade, str) and grade.strip().lower() == "yes"):
        raise RowRejected("not_graded_correct", f"deepseek_grade is {grade!r} (--graded-only)")
    if not answer.strip():
        raise RowRejected("empty_answer", "the attempt is empty")
    return Conversation(exchanges=[(question, Reply(answer=answer.strip(), reasoning=reasoning.strip()))])


_STRATOS_COLUMNS = (("conversations",),)

SOURCES: dict[str, Source] = {
    "bespoke-stratos": Source(
        stratos_conversation, _STRATOS_COLUMNS, "Bespoke-Stratos-17k/35k (Stratos thought/solution tags)",
        optional_columns=("system",), reasoning_required=True, hub_id="bespokelabs/Bespoke-Stratos-17k"),
    "sky-t1": Source(
        stratos_conversation, _STRATOS_COLUMNS, "Sky-T1_data_17k (one JSON array, Stratos tags)",
        optional_columns=("system",), reasoning_required=True, hub_id="NovaSky-AI/Sky-T1_data_17k"),
    "openthoughts": Source(
        stratos_conversation, _STRATOS_COLUMNS, "OpenThoughts-114k, config default (Stratos tags)",
        optional_columns=("system",), reasoning_required=True, hub_id="open-thoughts/OpenThoughts-114k",
        hub_subset="default"),
    "openthoughts-metadata": Source(
        openthoughts_metadata_conversation, (("problem", "deepseek_reasoning", "deepseek_solution"),),
        "OpenThoughts-114k, config metadata (reasoning and solution columns)", reasoning_required=True,
        hub_id="open-thoughts/OpenThoughts-114k", hub_subset="metadata"),
    "magpie-reasoning": Source(
        magpie_conversation, (("instruction", "response"), ("conversations",)),
        "Magpie-Reasoning-V2 (<think> in response; instruction/response or human/gpt conversations)",
        optional_columns=("input_quality",), reasoning_required=True, quality_column="input_quality",
        hub_id="Magpie-Align/Magpie-Reasoning-V2-250K-CoT-Deepseek-R1-Llama-70B"),
    "openr1-math": Source(
        openr1_conversation, (("problem", "generations", "correctness_math_verify"),),
        "OpenR1-Math-220k / generic R1 shape (first complete, verified generation per problem)",
        optional_columns=("is_reasoning_complete", "finish_reasons"), reasoning_required=True,
        hub_id="open-r1/OpenR1-Math-220k", hub_subset="default"),
    "openthoughts3": Source(
        sharegpt_conversation, (("conversations",),),
        "OpenThoughts3-1.2M and OpenThoughts2-1M (<think>; ~16 answers per question: see --max-per-prompt)",
        optional_columns=("system",), reasoning_required=True, hub_id="open-thoughts/OpenThoughts3-1.2M"),
    "mixture-of-thoughts": Source(
        sharegpt_conversation, (("messages",),), "Mixture-of-Thoughts (role/content messages, <think>)",
        reasoning_required=True, hub_id="open-r1/Mixture-of-Thoughts", hub_subset="all"),
    "nemotron": Source(
        nemotron_conversation, (("input", "output"),),
        "Llama-Nemotron-Post-Training SFT splits (reasoning on/off per row; --reasoning, --thinking-prompt)",
        optional_columns=("reasoning", "system_prompt"), options=("reasoning", "thinking_prompt"),
        hub_id="nvidia/Llama-Nemotron-Post-Training-Dataset", hub_subset="SFT"),
    "openmath-reasoning": Source(
        openmath_conversation, (("problem", "generated_solution"),),
        "OpenMathReasoning (prompt built from problem per --mode cot|tir|genselect; --min-pass-rate, --drop-proofs)",
        optional_columns=("inference_mode", "problem_type", "pass_rate_72b_tir"),
        options=("mode", "min_pass_rate", "drop_proofs"), hub_id="nvidia/OpenMathReasoning"),
    "am-r1-distilled": Source(
        am_conversation, (("messages",), ("conversations",)),
        "AM-DeepSeek-R1-Distilled (.jsonl.zst) and AM-Thinking-v1 (<think>/<answer> inline and in info)",
        optional_columns=("system",), reasoning_required=True, hub_id="a-m-team/AM-DeepSeek-R1-Distilled-1.4M",
        hub_subset="am_0.9M"),
    "s1k": Source(
        s1k_conversation, (("question", "deepseek_thinking_trajectory", "deepseek_attempt"),
                           ("question", "thinking_trajectories", "attempt")),
        "s1K-1.1 (reasoning and attempt columns; --graded-only keeps deepseek_grade Yes)",
        optional_columns=("deepseek_grade",), reasoning_required=True, options=("graded_only",),
        hub_id="simplescaling/s1K-1.1"),
    "sharegpt": Source(
        sharegpt_conversation, (("conversations",), ("messages",)),
        "generic ShareGPT (from/value or role/content, any known role names, system turn or column)",
        optional_columns=("system",)),
    "alpaca": Source(
        alpaca_conversation, (("instruction", "output"),), "Alpaca (instruction, input, output, system, history, reasoning)",
        optional_columns=("input", "system", "history", "reasoning")),
    "openai": Source(openai_conversation, (("messages",),), "OpenAI chat messages (role/content)"),
    "custom": Source(
        alpaca_conversation, (("instruction", "output"),),
        "any flat columns mapped onto Alpaca's with --map (e.g. question=instruction,answer=output,cot=reasoning)",
        optional_columns=("input", "system", "history", "reasoning"), needs_field_map=True),
}


def get_source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, [n for n in (*SOURCES, "samples") if n != name], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise R1sftError(f"unknown source {name!r}; {hint}known: {', '.join(SOURCES)}, samples") from None


def check_source_options(values: dict, source_names: list[str]) -> None:
    """Refuse a source option that no source of the run reads, or a value it does not accept (one line each)."""
    for name, option in SOURCE_OPTIONS.items():
        value = values.get(name)
        if value is None:
            continue
        if not any(name in get_source(s).options for s in source_names):
            owners = ", ".join(n for n, s in SOURCES.items() if name in s.options)
            raise R1sftError(f"{option.flag}: an option of source {owners}, not of {', '.join(source_names)}")
        if option.check is not None:
            if not option.check(value):
                raise R1sftError(f"{option.flag} {value!r}: expected {option.expected}")
        elif value not in option.choices:
            raise R1sftError(f"{option.flag} {value!r}: expected one of {', '.join(map(str, option.choices))}")


def parse_field_map(spec: str | dict[str, str] | None) -> dict[str, str]:
    """``"question=instruction,answer=output"`` -> ``{"question": "instruction", "answer": "output"}``."""
    if not spec:
        return {}
    if isinstance(spec, dict):
        return dict(spec)
    mapping = {}
    for item in spec.split(","):
        src, sep, dst = item.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise R1sftError(f"--map {spec!r}: expected SOURCE_COLUMN=TARGET_COLUMN[,...], got {item!r}")
        mapping[src.strip()] = dst.strip()
    return mapping
