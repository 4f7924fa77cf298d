"""Train/inference template parity: the prompt a model is trained on must be the prompt it is served with.

LLaMA-Factory formats training data with its own template (``qwen``, ``qwen3``, ``llama3``...), but the exported
model keeps the base model's ``chat_template``, which is what vLLM, transformers and every chat UI use. Where the two
disagree the fine-tuned model is served prompts it never saw: Llama-3.2's template injects a "Cutting Knowledge Date /
Today Date" system block LLaMA-Factory never trains on; Qwen3's drops earlier replies' reasoning, which
LLaMA-Factory's ``qwen3`` keeps unless ``mask_history`` is on; served with ``enable_thinking=False`` it opens the reply
with an empty think block that ``qwen3_nothink`` never trains.

So r1sft compares token ids on probe conversations: one and three turns (earlier replies with and without their
reasoning), with and without a system prompt, thinking on and off. The training side is built as LLaMA-Factory's
supervised processor builds a sample (``encode_multiturn`` with the recipe's ``enable_thinking`` and
``mask_history``); the inference side is ``apply_chat_template(..., add_generation_prompt=True)`` on the earlier
turns. They match when the served prompt is the trained prompt, or the trained prompt followed by the start of the
reply the model was trained to write (Qwen3's empty think block, served with ``enable_thinking=False``). On a
mismatch :func:`align_exported_chat_template` gives the export a chat template that reproduces training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from r1sft.errors import R1sftError
from r1sft.paths import PACKAGE_DIR

PROBE_SYSTEMS = ("", "You are a careful assistant. Think before you answer.")
REASONING_TEMPLATES = ("qwen3",)  # LLaMA-Factory ReasoningTemplate names r1sft uses
_QUESTIONS = ("What is 23 + 19? Reason step by step.", "And 23 + 19 + 7?", "Now double it.")
_REASONING = ("23 + 19 = 42.", "42 + 7 = 49.", "49 x 2 = 98.")
_ANSWERS = ("The answer is \\boxed{42}.", "The answer is \\boxed{49}.", "The answer is \\boxed{98}.")


@dataclass(frozen=True)
class Probe:
    """A conversation as converted data holds it: user/assistant turns, the last reply the one being trained."""

    turns: int
    system: str
    thinking: bool  # the last reply has reasoning, and the template is served with enable_thinking=thinking
    earlier_reasoning: bool  # earlier replies keep their reasoning (r1sft convert --earlier-reasoning keep)

    @property
    def messages(self) -> list[dict[str, str]]:
        out = []
        for i in range(self.turns):
            reasoning = self.thinking if i == self.turns - 1 else self.earlier_reasoning
            reply = f"<think>\n{_REASONING[i]}\n</think>\n\n{_ANSWERS[i]}" if reasoning else _ANSWERS[i]
            out += [{"role": "user", "content": _QUESTIONS[i]}, {"role": "assistant", "content": reply}]
        return out

    def describe(self) -> str:
        parts = [f"{self.turns} turn{'s' if self.turns > 1 else ''}"]
        if self.turns > 1:
            parts.append("earlier reasoning " + ("kept" if self.earlier_reasoning else "dropped"))
        parts.append("system prompt" if self.system else "no system prompt")
        parts.append(f"enable_thinking={self.thinking}")
        return ", ".join(parts)


@dataclass
class ParityReport:
    probe: Probe
    training_prompt: list[int]
    training_reply: list[int]
    inference_prompt: list[int]

    @property
    def system(self) -> str:
        return self.probe.system

    @property
    def matches(self) -> bool:
        """The served prompt is the trained one, or that plus the opening of the trained reply."""
        trained, served = self.training_prompt, self.inference_prompt
        extra = len(served) - len(trained)
        return served[:len(trained)] == trained and 0 <= extra < len(self.training_reply) and \
            served[len(trained):] == self.training_reply[:extra]


def probes(template_name: str, enable_thinking: bool | None = True) -> list[Probe]:
    """The probe conversations for a recipe: thinking off only where training turned it off."""
    modes = (False,) if template_name in REASONING_TEMPLATES and enable_thinking is False else (True, False)
    out = []
    for thinking in modes:
        for system in PROBE_SYSTEMS:
            out.append(Probe(1, system, thinking, False))
            out += [Probe(3, system, thinking, earlier) for earlier in (True, False)]
    return out


def lf_template(tokenizer, template_name: str, enable_thinking: bool | None = True):
    """LLaMA-Factory's Template object for ``template_name``, as its trainer builds it."""
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    return get_template_and_fix_tokenizer(tokenizer, DataArguments(template=template_name,
                                                                   enable_thinking=enable_thinking))


def training_ids(tokenizer, template, probe: Probe, mask_history: bool) -> tuple[list[int], list[int]]:
    """(prompt, reply) ids of the probe's last turn, as LLaMA-Factory's SupervisedDatasetProcessor builds a sample."""
    discard = mask_history and not template.preserve_thinking
    pairs = template.encode_multiturn(tokenizer, probe.messages, probe.system or None, None, discard)
    prompt = [token for source, target in pairs[:-1] for token in source + target] + pairs[-1][0]
    return prompt, pairs[-1][1]


def inference_ids(tokenizer, probe: Probe) -> list[int]:
    """What a server sends the model: the chat template on the earlier turns, with the generation prompt."""
    messages = ([{"role": "system", "content": probe.system}] if probe.system else []) + probe.messages[:-1]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                         enable_thinking=probe.thinking)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _tokenizer_files(model_dir: str | os.PathLike) -> tuple:
    """What a loaded tokenizer depends on: its files and their modification times."""
    folder = Path(model_dir)
    return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.glob("*"))
                 if p.is_file() and (p.name.startswith(("tokenizer", "special_tokens")) or p.suffix == ".jinja"))


@lru_cache(maxsize=16)
def _load_tokenizer(model_dir: str, _files: tuple, _role: str):
    """One instance per role: the served one is never patched; a trained one only ever by its own template."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def check_parity(model_dir: str | os.PathLike, template_name: str, enable_thinking: bool | None = True,
                 mask_history: bool = True) -> list[ParityReport]:
    """Compare training and inference ids of every probe for the model in ``model_dir``."""
    # A real vocabulary takes seconds to load: loaded once per version of the files
    files = _tokenizer_files(model_dir)
    served = _load_tokenizer(str(model_dir), files, "served")  # what inference uses, untouched
    trained = _load_tokenizer(str(model_dir), files, f"trained by {template_name}")  # LLaMA-Factory patches it
    template = lf_template(trained, template_name, enable_thinking)
    reports = []
    for probe in probes(template_name, enable_thinking):
        prompt, reply = training_ids(trained, template, probe, mask_history)
        reports.append(ParityReport(probe, prompt, reply, inference_ids(served, probe)))
    return reports


def training_chat_template(tokenizer, template_name: str, enable_thinking: bool | None = True,
                           mask_history: bool = True) -> str:
    """A chat template reproducing LLaMA-Factory's training format: r1sft's own where written, else LF's."""
    own = PACKAGE_DIR / "chat_templates"
    if template_name == "qwen3":
        if mask_history:  # LLaMA-Factory then renders earlier turns as the hub template does
            return (own / "qwen3.jinja").read_text()
        text = (own / "train_qwen3_keep_history.jinja").read_text()
        return text if enable_thinking is not False else text.replace(_TRAINED_THINKING, _TRAINED_NO_THINKING, 1)
    if (own / f"train_{template_name}.jinja").exists():
        return (own / f"train_{template_name}.jinja").read_text()
    return lf_template(tokenizer, template_name, enable_thinking)._get_jinja_template(tokenizer)


_TRAINED_THINKING = "{%- set trained_thinking = true %}"
_TRAINED_NO_THINKING = "{%- set trained_thinking = false %}"


def align_exported_chat_template(export_dir: str | os.PathLike, template_name: str,
                                 enable_thinking: bool | None = True, mask_history: bool = True) -> str | None:
    """Make ``export_dir``'s chat template match training; return a note when it had to change, else None."""
    from transformers import AutoTokenizer

    if not template_name:
        return None
    bad = [r for r in check_parity(export_dir, template_name, enable_thinking, mask_history) if not r.matches]
    if not bad:
        return None
    tokenizer = AutoTokenizer.from_pretrained(export_dir)
    tokenizer.chat_template = training_chat_template(tokenizer, template_name, enable_thinking, mask_history)
    tokenizer.save_pretrained(export_dir)
    still = [r for r in check_parity(export_dir, template_name, enable_thinking, mask_history) if not r.matches]
    if still:
        raise R1sftError(f"{export_dir}: could not make the chat template match LLaMA-Factory's {template_name!r} "
                         f"training template ({still[0].probe.describe()})")
    return (f"the base model's chat template differs from LLaMA-Factory's {template_name!r} training format "
            f"({bad[0].probe.describe()}); {Path(export_dir) / 'chat_template.jinja'} now reproduces training "
            "prompts exactly")


def align_exported(export_dir: str | os.PathLike, merge_config: dict) -> list[str]:
    """A fresh export's chat template, generation config and embedding tie made to match its training; the notes of
    what changed."""
    from r1sft.generation import align_generation_config
    from r1sft.merge.export import resolve, untie_trained_embeddings
    from r1sft.presets import family_for_model

    notes = []
    template = merge_config.get("template", "")
    if template:
        thinking, mask = merge_config.get("enable_thinking", True), bool(merge_config.get("mask_history", False))
        notes.append(align_exported_chat_template(export_dir, template, thinking, mask))
        family = family_for_model(resolve(str(merge_config.get("model_name_or_path", "")))) or \
            family_for_model(str(export_dir))
        notes.append(align_generation_config(export_dir, end_of_turn(template), family))
    notes.append(untie_trained_embeddings(export_dir))
    return [note for note in notes if note]


def end_of_turn(template_name: str) -> str:
    """The token LLaMA-Factory's template ends a reply with (its first stop word)."""
    from llamafactory.data.template import TEMPLATES

    template = TEMPLATES.get(template_name)
    if template is None or not template.stop_words:
        raise R1sftError(f"template {template_name!r}: no end-of-turn token known to LLaMA-Factory")
    return template.stop_words[0]


def stop_problems(model_dir: str | os.PathLike, template_name: str) -> list[str]:
    """Why ``model_dir`` would not stop where training taught it: each trained reply must end with the template's
    end-of-turn token, and that token must be an EOS id of its generation config."""
    from transformers import AutoTokenizer, GenerationConfig

    token = end_of_turn(template_name)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    eot = tokenizer.convert_tokens_to_ids(token)
    problems = []
    newline = set(tokenizer("\n", add_special_tokens=False)["input_ids"])
    for report in check_parity(model_dir, template_name):
        tail = list(report.training_reply)
        while tail and tail[-1] in newline:
            tail.pop()
        if not tail or tail[-1] != eot:
            problems.append(f"{report.probe.describe()}: the trained reply does not end with {token}")
    eos = GenerationConfig.from_pretrained(model_dir).eos_token_id
    if eot not in (eos if isinstance(eos, list) else [eos]):
        problems.append(f"generation_config.json eos_token_id {eos} lacks {token} (id {eot}): replies never stop")
    return problems
