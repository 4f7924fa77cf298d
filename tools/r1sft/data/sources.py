"""Every supported dataset, declared once: a pure function from a source row to a ``Conversation`` plus its columns.

A converter never does I/O and never counts anything: it returns a conversation or raises ``RowRejected(reason)``.
Readers, hygiene filters, rendering, registration and reporting are shared (see ``pipeline.py``). Adding a dataset
means adding one function (often reusing ``conversation_from_turns``) and one ``SOURCES`` entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson

from r1sft.data.conversation import Conversation, Reply, RowRejected
from r1sft.data.reasoning import parse_reply
from r1sft.errors import R1sftError

# Role names seen in the wild, mapped to the three roles a training conversation has.
ROLE_ALIASES = {
    "human": "user", "user": "user", "prompter": "user",
    "gpt": "assistant", "assistant": "assistant", "model": "assistant", "bot": "assistant", "chatgpt": "assistant",
    "system": "system",
}
UNSUPPORTED_ROLES = {"tool", "function", "observation", "ipython", "function_call", "tool_call"}


@dataclass(frozen=True)
class Source:
    """How to read one dataset.

    ``column_sets``: alternative sets of required columns (a row must have every column of at least one set);
    ``optional_columns``: read when present. ``reasoning_required``: the last reply must carry a non-empty chain of
    thought (R1-style datasets; generic formats may mix in plain answers). ``quality_column`` feeds
    ``--min-quality``. ``hub_id``/``hub_subset``: what ``--input`` defaults to.
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


# ---- small typed accessors: wrong types are the commonest defect of scraped data -----------------------------------

def _get(row: dict, name: str):
    value = row.get(name)
    if value is None:
        raise RowRejected("missing_field", f"{name!r} is missing or null")
    return value


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise RowRejected("wrong_type", f"{what} is {type(value).__name__}, expected a string")
    return value


def _optional_text(row: dict, name: str) -> str:
    value = row.get(name)
    if value is None:
        return ""
    return _text(value, name)


def _prompt(value, what: str) -> str:
    text = _text(value, what)
    if not text or text.isspace():
        raise RowRejected("empty_prompt", f"{what} is empty")
    return text


def _content_text(content, what: str) -> str:
    """OpenAI-style content: a string or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise RowRejected("wrong_type", f"{what} has a non-text content part")
            parts.append(part["text"])
        return "".join(parts)
    return _text(content, what)


# ---- shared shapes -------------------------------------------------------------------------------------------------

def conversation_from_turns(turns, system: str = "") -> Conversation:
    """A ShareGPT/OpenAI turn list (``from``/``value`` or ``role``/``content``, any known role names) as exchanges.

    A leading system turn becomes the system prompt; anything but strict user/assistant alternation ending with
    the assistant is rejected (LLaMA-Factory would skip such a row with only a warning).
    """
    if isinstance(turns, str) and turns.lstrip().startswith("["):
        # CSV exports and some hub conversions store the turn list as JSON text
        try:
            turns = orjson.loads(turns)
        except orjson.JSONDecodeError:
            raise RowRejected("wrong_type", "conversation is text that is not a JSON list of turns") from None
    if not isinstance(turns, list):
        raise RowRejected("wrong_type", f"conversation is {type(turns).__name__}, expected a list of turns")
    exchanges: list[tuple[str, Reply]] = []
    pending: str | None = None
    aliases = ROLE_ALIASES
    for i, turn in enumerate(turns):
        if type(turn) is not dict:
            raise RowRejected("wrong_type", f"turn {i} is {type(turn).__name__}, expected an object")
        role_name = turn.get("from")
        if role_name is not None:
            content = turn.get("value")
        else:
            role_name = turn.get("role")
            if role_name is None:
                raise RowRejected("missing_field", f"turn {i} has neither 'from'/'value' nor 'role'/'content'")
            content = turn.get("content")
        role = aliases.get(role_name) if type(role_name) is str else None
        if role is None:
            role = _role_slow(role_name, i)
        if type(content) is not str:
            if content is None:
                raise RowRejected("missing_field", f"turn {i} has no content")
            content = _content_text(content, f"turn {i} content")
        if role == "assistant":
            if pending is None:
                raise RowRejected("roles_out_of_order", f"assistant turn {i} does not follow a user turn")
            exchanges.append((pending, parse_reply(content)))
            pending = None
        elif role == "user":
            if pending is not None:
                raise RowRejected("roles_out_of_order", f"two user turns in a row at turn {i}")
            if not content or content.isspace():
                raise RowRejected("empty_prompt", f"turn {i} (user) is empty")
            pending = content
        else:
            if i != 0:
                raise RowRejected("roles_out_of_order", f"system turn at position {i}")
            system = content
    if pending is not None:
        raise RowRejected("roles_out_of_order", "conversation ends with a user turn")
    if not exchanges:
        raise RowRejected("empty_conversation", "no user/assistant exchange")
    return Conversation(exchanges=exchanges, system=system)


def _role_slow(role_name, i: int) -> str:
    """Role names in other casings ("Human", "USER"), or the reason the turn's role is unusable."""
    if isinstance(role_name, str):
        role = ROLE_ALIASES.get(role_name.strip().lower())
        if role is not None:
            return role
        if role_name.lower() in UNSUPPORTED_ROLES:
            raise RowRejected("unsupported_role", f"turn {i} has role {role_name!r} (tool turns are not supported)")
    raise RowRejected("unknown_role", f"turn {i} has role {role_name!r}")


# ---- one converter per shape ---------------------------------------------------------------------------------------

def stratos_conversation(row: dict) -> Conversation:
    """Bespoke-Stratos, Sky-T1, OpenThoughts (default): ``system`` + ``conversations`` of user/assistant turns."""
    return conversation_from_turns(_get(row, "conversations"), system=_optional_text(row, "system"))


def openthoughts_metadata_conversation(row: dict) -> Conversation:
    """OpenThoughts metadata config: reasoning and solution are separate plain-text columns."""
    problem = _prompt(_get(row, "problem"), "problem")
    reasoning = _text(_get(row, "deepseek_reasoning"), "deepseek_reasoning").strip()
    answer = _text(_get(row, "deepseek_solution"), "deepseek_solution").strip()
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
    instruction = _prompt(_get(row, "instruction"), "instruction")
    return Conversation(exchanges=[(instruction, parse_reply(_text(_get(row, "response"), "response")))])


def openr1_conversation(row: dict) -> Conversation:
    """OpenR1-Math shape: the first generation that is complete and verified correct (one sample per problem).

    A generation counts when ``correctness_math_verify[i]`` is true, ``is_reasoning_complete[i]`` (if present) is
    true and ``finish_reasons[i]`` (if present) is "stop" or null. Later good generations are ignored: several
    near-identical solutions of one problem would overweight it.
    """
    problem = _prompt(_get(row, "problem"), "problem")
    generations = _get(row, "generations")
    verified = _get(row, "correctness_math_verify")
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
            reply = parse_reply(_text(generation, f"generations[{i}]"))
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
        turns = _get(row, "messages")
    return conversation_from_turns(turns, system=_optional_text(row, "system"))


def openai_conversation(row: dict) -> Conversation:
    """OpenAI chat format: ``messages`` of role/content, system message inside."""
    return conversation_from_turns(_get(row, "messages"))


def alpaca_conversation(row: dict) -> Conversation:
    """Alpaca: ``instruction`` (+ ``input``, joined with a newline as LLaMA-Factory does), ``output``,
    ``system``, ``history`` ([[prompt, response], ...] before this exchange)."""
    instruction = _text(_get(row, "instruction"), "instruction")
    extra = _optional_text(row, "input")
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
        exchanges.append((_prompt(pair[0], f"history[{i}][0]"), parse_reply(_text(pair[1], f"history[{i}][1]"))))
    exchanges.append((prompt, parse_reply(_text(_get(row, "output"), "output"))))
    return Conversation(exchanges=exchanges, system=_optional_text(row, "system"))


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
    "sharegpt": Source(
        sharegpt_conversation, (("conversations",), ("messages",)),
        "generic ShareGPT (from/value or role/content, any known role names, system turn or column)",
        optional_columns=("system",)),
    "alpaca": Source(
        alpaca_conversation, (("instruction", "output"),), "Alpaca (instruction, input, output, system, history)",
        optional_columns=("input", "system", "history")),
    "openai": Source(openai_conversation, (("messages",),), "OpenAI chat messages (role/content)"),
    "custom": Source(
        alpaca_conversation, (("instruction", "output"),),
        "any flat columns mapped onto Alpaca's with --map (e.g. question=instruction,answer=output)",
        optional_columns=("input", "system", "history"), needs_field_map=True),
}


def get_source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise R1sftError(f"unknown source {name!r}; known: {', '.join(SOURCES)}") from None


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
