"""What a source converter produces: a conversation, or a ``RowRejected`` saying why the row cannot be one.

A conversation is a system prompt plus (prompt, reply) exchanges. Pairing user and assistant turns structurally
means "roles out of order" is caught once, when a converter builds the pairs, and never reaches LLaMA-Factory
(which would silently skip the row). A reply keeps the reasoning and the answer apart, so markup is parsed once
and rendered in whichever style the user asks for.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class RowRejected(Exception):
    """A row that cannot become a training sample; ``reason`` is a stable snake_case code counted in the stats."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Reply:
    """An assistant turn split into its chain of thought and its final answer.

    ``reasoning`` is None when the source turn had no reasoning block at all, "" when it had an empty one.
    ``verbatim`` is the turn exactly as the source wrote it ("" when the source keeps reasoning and answer in
    separate columns), used by ``--think keep``.
    """

    answer: str
    reasoning: str | None = None
    verbatim: str = ""


@dataclass(slots=True)
class Conversation:
    exchanges: list[tuple[str, Reply]] = field(default_factory=list)
    system: str = ""

    def prompts(self) -> list[str]:
        return [prompt for prompt, _ in self.exchanges]
