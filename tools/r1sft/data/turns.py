"""What every source converter is built from: typed field accessors and the turn-list parser.

Wrong types are the commonest defect of scraped data, so each accessor raises ``RowRejected`` with a stable reason
(``missing_field``, ``wrong_type``, ``empty_prompt``) naming the field, never a TypeError further down.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from r1sft.data.conversation import Conversation, Reply, RowRejected
from r1sft.data.reasoning import parse_reply

# Role names seen in the wild, mapped to the three roles a training conversation has.
ROLE_ALIASES = {
    "human": "user", "user": "user", "prompter": "user",
    "gpt": "assistant", "assistant": "assistant", "model": "assistant", "bot": "assistant", "chatgpt": "assistant",
    "system": "system",
}
UNSUPPORTED_ROLES = {"tool", "function", "observation", "ipython", "function_call", "tool_call"}


def required(row: dict, name: str):
    value = row.get(name)
    if value is None:
        raise RowRejected("missing_field", f"{name!r} is missing or null")
    return value


def text(value, what: str) -> str:
    if not isinstance(value, str):
        raise RowRejected("wrong_type", f"{what} is {type(value).__name__}, expected a string")
    return value


def optional_text(row: dict, name: str) -> str:
    value = row.get(name)
    if value is None:
        return ""
    return text(value, name)


def prompt_text(value, what: str) -> str:
    value = text(value, what)
    if not value or value.isspace():
        raise RowRejected("empty_prompt", f"{what} is empty")
    return value


def content_text(content, what: str) -> str:
    """OpenAI-style content: a string or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise RowRejected("wrong_type", f"{what} has a non-text content part")
            parts.append(part["text"])
        return "".join(parts)
    return text(content, what)


def conversation_from_turns(turns, system: str = "",
                            reply_of: Callable[[dict, str], Reply] | None = None) -> Conversation:
    """A ShareGPT/OpenAI turn list (``from``/``value`` or ``role``/``content``, any known role names) as exchanges.

    A leading system turn becomes the system prompt; anything but strict user/assistant alternation ending with
    the assistant is rejected (LLaMA-Factory would skip such a row with only a warning). ``reply_of(turn, content)``
    replaces ``parse_reply`` for sources whose assistant turns carry more than their text (AM's ``info``); it is
    also given turns whose content is null, as "".
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
                if reply_of is None or role != "assistant":
                    raise RowRejected("missing_field", f"turn {i} has no content")
                content = ""
            else:
                content = content_text(content, f"turn {i} content")
        if role == "assistant":
            if pending is None:
                raise RowRejected("roles_out_of_order", f"assistant turn {i} does not follow a user turn")
            exchanges.append((pending, parse_reply(content) if reply_of is None else reply_of(turn, content)))
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
        raise RowRejected("no_reply", "conversation ends with a user turn (no assistant reply)")
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
