"""Train/inference template parity: the prompt a model is trained on must be the prompt it is served with.

LLaMA-Factory formats training data with its own template (``qwen``, ``qwen3``, ``llama3``...), but the exported
model keeps the base model's ``chat_template``, which is what vLLM, transformers and every chat UI use. Where the two
disagree (Llama-3.2's template injects a "Cutting Knowledge Date / Today Date" system block that LLaMA-Factory never
trains on) the fine-tuned model is served prompts it never saw. r1sft compares the token ids of both on probe
conversations and, on a mismatch, gives the export a chat template that reproduces training exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from r1sft.errors import R1sftError
from r1sft.paths import PACKAGE_DIR

PROBE_QUESTION = "What is 23 + 19? Reason step by step."
PROBE_SYSTEMS = ("", "You are a careful assistant. Think before you answer.")


@dataclass
class ParityReport:
    system: str
    training_ids: list[int]
    inference_ids: list[int]

    @property
    def matches(self) -> bool:
        return self.training_ids == self.inference_ids


def lf_template(tokenizer, template_name: str, enable_thinking: bool = True):
    """LLaMA-Factory's Template object for ``template_name``, as its trainer builds it."""
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    return get_template_and_fix_tokenizer(tokenizer, DataArguments(template=template_name,
                                                                   enable_thinking=enable_thinking))


def training_prompt_ids(tokenizer, template, question: str, system: str) -> list[int]:
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
    prompt_ids, _ = template.encode_oneturn(tokenizer, messages, system or None)
    return prompt_ids


def inference_prompt_ids(tokenizer, question: str, system: str) -> list[int]:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def check_parity(model_dir: str | os.PathLike, template_name: str) -> list[ParityReport]:
    """Compare training and inference prompt ids for the probe question, with and without a system prompt."""
    from transformers import AutoTokenizer

    served = AutoTokenizer.from_pretrained(model_dir)  # what inference uses, untouched
    trained = AutoTokenizer.from_pretrained(model_dir)  # LLaMA-Factory may patch this one
    template = lf_template(trained, template_name)
    return [ParityReport(system, training_prompt_ids(trained, template, PROBE_QUESTION, system),
                         inference_prompt_ids(served, PROBE_QUESTION, system)) for system in PROBE_SYSTEMS]


def training_chat_template(tokenizer, template_name: str) -> str:
    """A chat template reproducing LLaMA-Factory's training format: r1sft's own where written, else LF's."""
    own = PACKAGE_DIR / "chat_templates" / f"train_{template_name}.jinja"
    if own.exists():
        return own.read_text()
    return lf_template(tokenizer, template_name)._get_jinja_template(tokenizer)


def align_exported_chat_template(export_dir: str | os.PathLike, template_name: str) -> str | None:
    """Make ``export_dir``'s chat template match training; return a note when it had to change, else None."""
    from transformers import AutoTokenizer

    if not template_name:
        return None
    if all(report.matches for report in check_parity(export_dir, template_name)):
        return None
    tokenizer = AutoTokenizer.from_pretrained(export_dir)
    tokenizer.chat_template = training_chat_template(tokenizer, template_name)
    tokenizer.save_pretrained(export_dir)
    bad = [report for report in check_parity(export_dir, template_name) if not report.matches]
    if bad:
        raise R1sftError(f"{export_dir}: could not make the chat template match LLaMA-Factory's {template_name!r} "
                         f"training template (system prompt {bad[0].system!r})")
    return (f"the base model's chat template differs from LLaMA-Factory's {template_name!r} training template; "
            f"{Path(export_dir) / 'chat_template.jinja'} now reproduces training prompts exactly")
