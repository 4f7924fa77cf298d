"""What a multi-turn conversation's earlier replies keep of their reasoning: ``r1sft convert --earlier-reasoning``.

At inference a reasoning model never sees its own earlier chains of thought: Qwen3's chat template cuts the
``<think>`` block out of every assistant turn before the last user message, DeepSeek-R1's does the same, and
OpenAI-style clients send earlier replies back without their reasoning. So the default, ``drop``, writes earlier
replies as their answers only, the way the model will see them; the recipe then trains the last reply only
(``mask_history: true``), so no answer is ever learned without its reasoning. ``keep`` writes every reply as the
source has it; LLaMA-Factory then trains each reply with the earlier reasoning in context, which no published chat
template reproduces (``r1sft merge`` gives such a model a template that does, and says so).

The policy is recorded in the dataset's ``dataset_info.json`` entry (``r1sft.earlier_reasoning``), where
``r1sft recipe`` reads it.
"""

from __future__ import annotations

from r1sft.data.conversation import Conversation
from r1sft.data.reasoning import render_reply

EARLIER_REASONING = ("drop", "keep")
DEFAULT = "drop"


def render_turns(conversation: Conversation, style: str, split_think: bool, earlier: str = DEFAULT) -> list[str]:
    """The conversation's texts, user and assistant alternating; earlier replies as ``earlier`` says."""
    turns: list[str] = []
    last = len(conversation.exchanges) - 1
    for i, (prompt, reply) in enumerate(conversation.exchanges):
        turns.append(prompt)
        # "none" renders the answer alone, after the same markup checks every reply gets
        turns.append(render_reply(reply, style if i == last or earlier == "keep" else "none", split_think))
    return turns
