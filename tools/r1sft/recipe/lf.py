"""What LLaMA-Factory 0.9.5 accepts, asked of LLaMA-Factory itself.

Keys come from the dataclasses its parser is built from (``_TRAIN_ARGS`` for ``llamafactory-cli train``,
``_INFER_ARGS`` for ``llamafactory-cli export``), so an upgrade that renames a key shows up here, not in a list we
keep. Importing LLaMA-Factory costs seconds (torch, transformers), so it happens only inside these functions.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from functools import cache
from typing import Any

from r1sft.errors import R1sftError

TRAIN = "train"
EXPORT = "export"

# Training-argument keys LLaMA-Factory's examples put under "### output" rather than "### train".
OUTPUT_KEYS = (
    "output_dir",
    "logging_steps",
    "save_strategy",
    "save_steps",
    "save_total_limit",
    "save_only_model",
    "plot_loss",
    "overwrite_output_dir",
    "report_to",
    "run_name",
    "logging_dir",
)


def _dataclasses(kind: str) -> list[type]:
    from llamafactory.hparams.parser import _INFER_ARGS, _TRAIN_ARGS

    return list(_TRAIN_ARGS if kind == TRAIN else _INFER_ARGS)


@cache
def accepted_fields(kind: str) -> dict[str, tuple[type, dataclasses.Field]]:
    """Every key the parser for ``kind`` accepts, with its dataclass and field."""
    out: dict[str, tuple[type, dataclasses.Field]] = {}
    for cls in _dataclasses(kind):
        for f in dataclasses.fields(cls):
            if f.init and f.name not in out:
                out[f.name] = (cls, f)
    return out


def section_of(key: str) -> str:
    """The LLaMA-Factory YAML section (model, method, dataset, output, train) a training key belongs in."""
    from llamafactory.hparams import DataArguments, FinetuningArguments, ModelArguments

    fields = accepted_fields(TRAIN)
    if key not in fields:
        return "train"
    cls = fields[key][0]
    if key in OUTPUT_KEYS or key == "plot_loss":
        return "output"
    if cls is ModelArguments:
        return "model"
    if cls is FinetuningArguments:
        return "method"
    if cls is DataArguments:
        return "dataset"
    return "train"


def unknown_keys(args: dict[str, Any], kind: str) -> list[tuple[str, str | None]]:
    """(key, closest accepted key or None) for each key the parser would reject."""
    fields = accepted_fields(kind)
    out = []
    for key in args:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.75)
            out.append((key, close[0] if close else None))
    return out


def refuse_unknown_keys(args: dict[str, Any], kind: str, what: str) -> None:
    """Raise a one-line error for the first key LLaMA-Factory does not know, with the closest one it does."""
    unknown = unknown_keys(args, kind)
    if unknown:
        key, close = unknown[0]
        hint = f" (did you mean '{close}'?)" if close else ""
        raise R1sftError(f"{what} {key}: not a LLaMA-Factory 0.9.5 training argument{hint}")


def _type_ok(value: Any, annotation: Any) -> bool | None:
    """Whether ``value`` fits ``annotation``; None when the annotation is too loose to judge."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        verdicts = [_type_ok(value, arm) for arm in typing.get_args(annotation)]
        if any(v is True for v in verdicts):
            return True
        return None if any(v is None for v in verdicts) else False
    if annotation is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return value in {member.value for member in annotation} or isinstance(value, annotation)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if annotation is dict or typing.get_origin(annotation) is dict:
        return isinstance(value, dict)
    return None


def _declared_type(cls: type, key: str) -> Any:
    """The annotation as written: HfArgumentParser narrows ``dict | str | None`` fields to ``str`` in place for its
    command line, while ``parse_dict`` (what LLaMA-Factory's YAML goes through) still accepts a dict there."""
    for owner in cls.__mro__:
        if key in owner.__dict__.get("__annotations__", {}):
            try:
                return typing.get_type_hints(owner)[key]
            except Exception:  # noqa: BLE001 - an annotation we cannot resolve is not judged
                return None
    return None


BOOLEAN_WORDS = {"yes": True, "on": True, "true": True, "y": True, "no": False, "off": False, "false": False, "n": False}


def coerce_booleans(args: dict[str, Any], kind: str) -> dict[str, Any]:
    """``args`` with yes/no/on/off/true/false text turned into booleans where LLaMA-Factory declares the field
    ``bool`` (``enable_liger_kernel=off`` -> False) and left as text elsewhere (``save_strategy=no`` -> "no")."""
    words = {k for k, v in args.items() if isinstance(v, str) and v.strip().lower() in BOOLEAN_WORDS}
    if not words:  # the common case: no need to import LLaMA-Factory's dataclasses
        return dict(args)
    fields = accepted_fields(kind)
    out = dict(args)
    for key in words:
        value = args[key]
        if key in fields:
            declared, word = fields[key][1].type, value.strip().lower()
            choices = {str(c).lower() for c in fields[key][1].metadata.get("choices", ())}
            # a field that takes a bool reads the word as OmegaConf would (also `str | bool` ones such as
            # include_num_input_tokens_seen), unless the word is one of its own text choices
            if _type_ok(True, declared) is True and word not in choices:
                out[key] = BOOLEAN_WORDS[word]
    return out


def type_problems(args: dict[str, Any], kind: str) -> list[str]:
    """Values of the wrong type: HfArgumentParser.parse_dict passes YAML values through unconverted."""
    fields = accepted_fields(kind)
    problems = []
    for key, value in args.items():
        if key not in fields:
            continue
        annotation = fields[key][1].type
        if _type_ok(value, annotation) is False and _type_ok(value, _declared_type(fields[key][0], key)) is not True:
            shown = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
            problems.append(f"'{key}' is {value!r} ({type(value).__name__}), expected {shown}")
    return problems


def _device_neutral(args: dict[str, Any]) -> dict[str, Any]:
    """The arguments as the parser would take them on a GPU machine, for checking on a machine without one.

    transformers refuses ``bf16: true`` unless a bf16 GPU is present or ``use_cpu`` is set; the device does not
    change which keys and values are valid, so checking sets ``use_cpu`` where no GPU is present.
    """
    import torch

    if (args.get("bf16") or args.get("fp16") or args.get("pure_bf16")) and not torch.cuda.is_available():
        args = {**args, "use_cpu": True}
    return args


def parse(args: dict[str, Any], kind: str) -> tuple:
    """Run LLaMA-Factory's own HfArgumentParser (no extra keys allowed) and its argument cross-checks.

    Raises ValueError/TypeError/AssertionError with LLaMA-Factory's message when it rejects the arguments.
    """
    from llamafactory.hparams.parser import HfArgumentParser, _verify_model_args
    from transformers.utils import logging as hf_logging

    parser = HfArgumentParser(_dataclasses(kind))
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # deprecation notices are not problems with the recipe
    try:
        parsed = parser.parse_dict(_device_neutral(args), allow_extra_keys=False)
        if kind == TRAIN:
            model_args, data_args, training_args, finetuning_args, _ = parsed
            _verify_train_args(model_args, data_args, training_args, finetuning_args)
        else:
            model_args, data_args, finetuning_args, _ = parsed
        _verify_model_args(model_args, data_args, finetuning_args)
        return parsed
    finally:
        hf_logging.set_verbosity(verbosity)
        _forget_deepspeed()


def _verify_train_args(model_args, data_args, training_args, finetuning_args) -> None:
    """The device-independent checks of llamafactory.hparams.parser.get_train_args, in its words.

    get_train_args itself also requires a distributed launch for DeepSpeed and sets up devices and logging, which
    a checker on a laptop cannot do; these are the rules that depend on the arguments alone.
    """
    zero3 = bool(training_args.deepspeed) and _zero_stage(training_args) == 3
    if finetuning_args.stage != "sft":
        if training_args.predict_with_generate:
            raise ValueError("`predict_with_generate` cannot be set as True except SFT.")
        if data_args.neat_packing:
            raise ValueError("`neat_packing` cannot be set as True except SFT.")
        if data_args.train_on_prompt or data_args.mask_history:
            raise ValueError("`train_on_prompt` or `mask_history` cannot be set as True except SFT.")
    if finetuning_args.stage == "sft" and training_args.do_predict and not training_args.predict_with_generate:
        raise ValueError("Please enable `predict_with_generate` to save model predictions.")
    if training_args.max_steps == -1 and data_args.streaming:
        raise ValueError("Please specify `max_steps` in streaming mode.")
    if training_args.do_train and data_args.dataset is None:
        raise ValueError("Please specify dataset for training.")
    if (training_args.do_eval or training_args.do_predict or training_args.predict_with_generate) and (
        data_args.eval_dataset is None and data_args.val_size < 1e-6
    ):
        raise ValueError("Please make sure eval_dataset be provided or val_size >1e-6")
    if training_args.do_train and model_args.quantization_device_map == "auto":
        raise ValueError("Cannot use device map for quantized models in training.")
    if finetuning_args.pissa_init and zero3:
        raise ValueError("Please use scripts/pissa_init.py to initialize PiSSA in DeepSpeed ZeRO-3.")
    if finetuning_args.pure_bf16 and zero3:
        raise ValueError("`pure_bf16` is incompatible with DeepSpeed ZeRO-3.")
    if training_args.deepspeed is not None and (finetuning_args.use_galore or finetuning_args.use_apollo):
        raise ValueError("GaLore and APOLLO are incompatible with DeepSpeed yet.")
    if training_args.fp8 and model_args.quantization_bit is not None:
        raise ValueError("FP8 training is not compatible with quantization. Please disable one of them.")
    if model_args.use_unsloth and zero3:
        raise ValueError("Unsloth is incompatible with DeepSpeed ZeRO-3.")


def _zero_stage(training_args) -> int | None:
    config = getattr(training_args, "hf_deepspeed_config", None)
    stage = config.config.get("zero_optimization", {}).get("stage") if config is not None else None
    return int(stage) if isinstance(stage, int) else None


def _forget_deepspeed() -> None:
    """Parsing a DeepSpeed config registers it globally (is_deepspeed_zero3_enabled); undo that for the caller."""
    try:
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
    except ImportError:  # pragma: no cover - transformers without the helper
        pass


@cache
def template_names() -> frozenset[str]:
    """LLaMA-Factory's registered chat templates (the parser does not check ``template``; loading does)."""
    from llamafactory.data.template import TEMPLATES

    return frozenset(TEMPLATES)
