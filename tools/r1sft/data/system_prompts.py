"""The Sky-T1 / Bespoke-Stratos / OpenThoughts system prompt, and what ``--system`` does with system prompts.

The prompt tells the model to answer inside ``<|begin_of_thought|>`` / ``<|begin_of_solution|>`` markup. It exists in
two byte variants: SkyThought's has real newlines in ``'\\n\\n'``, Bespoke's and OpenThoughts' copies have a literal
backslash-n. Recognition therefore does not compare bytes: a system prompt is "the R1 prompt" when, after turning
literal ``\\n`` into newlines, it starts with the prompt's first sentence and mentions ``<|begin_of_thought|>``.

Default policy (``auto``): with ``--think native`` or ``none`` the prompt describes markup the data no longer has,
and a model trained with it learns to expect a 1,000-character prompt at inference, so it is dropped; with ``keep``
or ``thought`` it matches the data and is kept (literal-``\\n`` variant normalised to real newlines). Other system
prompts are always kept under ``auto``.
"""

from __future__ import annotations

R1_PROMPT_OPENING = (
    "Your role as an assistant involves thoroughly exploring questions through a systematic long thinking process "
    "before providing the final precise and accurate solutions."
)

# SkyThought's variant (real newlines). Bespoke-Stratos and OpenThoughts carry the same text with "\\n\\n".
R1_SYSTEM_PROMPT = (
    R1_PROMPT_OPENING + " This requires engaging in a comprehensive cycle of analysis, summarizing, exploration, "
    "reassessment, reflection, backtracing, and iteration to develop well-considered thinking process. Please "
    "structure your response into two main sections: Thought and Solution. In the Thought section, detail your "
    "reasoning process using the specified format: <|begin_of_thought|> {thought with steps separated with '\n\n'} "
    "<|end_of_thought|> Each step should include detailed considerations such as analisying questions, summarizing "
    "relevant findings, brainstorming new ideas, verifying the accuracy of the current steps, refining any errors, "
    "and revisiting previous steps. In the Solution section, based on various attempts, explorations, and "
    "reflections from the Thought section, systematically present the final solution that you deem correct. The "
    "solution should remain a logical, accurate, concise expression style and detail necessary step needed to reach "
    "the conclusion, formatted as follows: <|begin_of_solution|> {final formatted, precise, and clear solution} "
    "<|end_of_solution|> Now, try to solve the following question through the above guidelines:"
)
R1_SYSTEM_PROMPT_LITERAL_NEWLINES = R1_SYSTEM_PROMPT.replace("\n", "\\n")

SYSTEM_POLICIES = ("auto", "keep", "drop")  # anything else is a replacement text


def r1_prompt_variant(system: str) -> str | None:
    """``"real_newlines"`` or ``"literal_backslash_n"`` when ``system`` is the R1 prompt, else None."""
    if not system.startswith(R1_PROMPT_OPENING) and not (
            system[:1].isspace() and system.lstrip().startswith(R1_PROMPT_OPENING)):
        return None
    if "<|begin_of_thought|>" not in system:
        return None
    return "literal_backslash_n" if "\\n" in system else "real_newlines"


def normalise_r1_prompt(system: str) -> str:
    return system.replace("\\n", "\n")


class SystemPolicy:
    """Applies ``--system`` (``auto``, ``keep``, ``drop`` or a replacement text) to one row's system prompt."""

    def __init__(self, policy: str, think: str) -> None:
        self.policy = "drop" if policy == "" else policy
        self.drop_r1_prompt = self.policy == "drop" or (self.policy == "auto" and think in ("native", "none"))

    def apply(self, system: str) -> tuple[str, str | None, str]:
        """(new system prompt, R1 prompt variant or None, what was done: kept/dropped/replaced/empty)."""
        variant = r1_prompt_variant(system) if system else None
        if self.policy not in SYSTEM_POLICIES:
            return self.policy, variant, "replaced"
        if not system:
            return "", None, "empty"
        if self.policy == "drop" or (variant and self.drop_r1_prompt):
            return "", variant, "dropped"
        return (normalise_r1_prompt(system) if variant == "literal_backslash_n" else system), variant, "kept"

    def describe(self) -> str:
        if self.policy not in SYSTEM_POLICIES:
            return "replaced by the given text"
        if self.policy == "auto":
            return "auto: known R1 prompt " + ("dropped" if self.drop_r1_prompt else "kept") + ", others kept"
        return self.policy
