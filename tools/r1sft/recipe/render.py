"""Lay a :class:`~r1sft.recipe.plan.Plan` out as LLaMA-Factory YAML through the Jinja templates in ``templates/``.

The templates decide the order, sections and fixed comments; every value comes from the plan. Jinja runs with
``StrictUndefined`` and each template's output is read back and compared with the plan, so a value the template
forgets, misspells or invents is an error rather than a silently different recipe. Output holds no timestamps:
the same request renders the same bytes, so committed recipes can be checked for staleness.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import yaml

from r1sft import paths
from r1sft.errors import R1sftError
from r1sft.recipe.data import SAMPLE_DATASET
from r1sft.recipe.fit import METHOD_NAMES
from r1sft.recipe.memory import host_ram_needed
from r1sft.recipe.plan import Plan
from r1sft.recipe.request import display
from r1sft.yamlio import atomic_write_text

SFT_TEMPLATE = "sft.yaml.j2"
MERGE_TEMPLATE = "merge.yaml.j2"
COMMENT_COLUMN = 40
_SKIP = "\x00skip\x00"


def yaml_scalar(value: Any) -> str:
    """One YAML scalar that both PyYAML and LLaMA-Factory's OmegaConf read back as ``value``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):  # a flow mapping: TrainingArguments' accelerator_config
        return "{" + ", ".join(f"{key}: {yaml_scalar(item)}" for key, item in value.items()) + "}"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e7):
            exponent = math.floor(math.log10(abs(value)))
            mantissa = value / 10**exponent
            return f"{mantissa!r}e{exponent}" if "." in repr(mantissa) else f"{mantissa!r}.0e{exponent}"
        return repr(value)
    text = str(value)
    plain = yaml.safe_dump(text, default_flow_style=True, width=10**6).strip()
    if plain.endswith("\n...") or plain.endswith(" ..."):
        plain = plain[: -len("...")].strip()
    if plain == text and not _omegaconf_misreads(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def _omegaconf_misreads(text: str) -> bool:
    """OmegaConf (YAML 1.2-ish numbers, ${} interpolation) would not read this plain text as the same string."""
    import re

    return "${" in text or bool(re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text))


class _Emitter:
    """What templates call to print ``key: value  # why`` lines; it records which keys were printed."""

    def __init__(self, values: dict[str, Any], why: dict[str, str], extra: list[str], template: str):
        self.values, self.why, self.extra, self.template = values, why, extra, template
        self.printed: list[str] = []

    def line(self, key: str, note: str | None = None) -> str:
        if key not in self.values:
            from jinja2 import UndefinedError

            raise UndefinedError(f"'{key}' is undefined (the plan has no value for it)")
        self.printed.append(key)
        text = f"{key}: {yaml_scalar(self.values[key])}"
        comment = self.why.get(key) or note
        if comment:
            text = f"{text.ljust(COMMENT_COLUMN - 2)}  # {comment}" if len(text) < COMMENT_COLUMN - 2 else f"{text}  # {comment}"
        return text

    def opt(self, key: str, note: str | None = None) -> str:
        """The line for ``key`` when the plan has one; otherwise nothing (the whole line disappears)."""
        return self.line(key, note) if key in self.values else _SKIP

    def rest(self, section: str) -> str:
        """--set keys no template line placed, printed at the end of the section LLaMA-Factory files them under."""
        if not self.extra:
            return _SKIP
        from r1sft.recipe import lf

        keys = [k for k in self.extra if k not in self.printed and lf.section_of(k) == section]
        return "\n".join(self.line(k) for k in keys) if keys else _SKIP


def _environment(templates_dir: Path):
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def _render(env, name: str, context: dict[str, Any], emitter: _Emitter, values: dict[str, Any]) -> str:
    import jinja2

    path = Path(env.loader.searchpath[0]) / name
    try:
        text = env.get_template(name).render(e=emitter, **context)
    except jinja2.TemplateNotFound:
        raise R1sftError(f"{display(path)}: template not found") from None
    except jinja2.UndefinedError as exc:
        line = _template_line(path)
        raise R1sftError(f"{display(path)}{line}: {exc.message} (rendering {context['recipe_path']})") from None
    except jinja2.TemplateSyntaxError as exc:
        raise R1sftError(f"{display(path)}: line {exc.lineno}: {exc.message}") from None
    text = "\n".join(line for line in text.split("\n") if line != _SKIP)
    # Every planned value printed exactly once, and read back unchanged (PyYAML and OmegaConf alike).
    dupes = sorted({k for k in emitter.printed if emitter.printed.count(k) > 1})
    missing = [k for k in values if k not in emitter.printed]
    if dupes or missing:
        raise R1sftError(
            f"{display(path)}: "
            + "; ".join(filter(None, [f"prints {', '.join(dupes)} twice" if dupes else "",
                                      f"never prints {', '.join(missing)}" if missing else ""]))
        )
    loaded = yaml.safe_load(text)
    if loaded != values:
        changed = sorted(k for k in set(loaded or {}) | set(values) if (loaded or {}).get(k) != values.get(k))
        raise R1sftError(f"{display(path)}: the rendered YAML does not read back as planned: {', '.join(changed)}")
    return text


def _template_line(path: Path) -> str:
    """' line N' of the template frame that raised, from the traceback Jinja rewrites to point at templates."""
    tb = sys.exc_info()[2]
    lineno = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            lineno = tb.tb_lineno
        tb = tb.tb_next
    return f": line {lineno}" if lineno else ""


def render_recipe(plan: Plan, *, templates_dir: Path | None = None) -> dict[Path, str]:
    """The recipe files of ``plan``: {path: text}, the SFT recipe and for adapters the merge recipe."""
    env = _environment(templates_dir or paths.TEMPLATES_DIR)
    sft_shown = display(plan.sft_path).as_posix()
    merge_shown = display(plan.merge_path).as_posix() if plan.merge_path else None
    context = _context(plan, sft_shown, merge_shown)
    out: dict[Path, str] = {}
    emitter = _Emitter(plan.train, plan.why, plan.extra_keys, SFT_TEMPLATE)
    out[plan.sft_path] = _render(env, SFT_TEMPLATE, {**context, "recipe_path": sft_shown}, emitter, plan.train)
    if plan.merge is not None and plan.merge_path is not None:
        emitter = _Emitter(plan.merge, plan.merge_why, [], MERGE_TEMPLATE)
        out[plan.merge_path] = _render(env, MERGE_TEMPLATE, {**context, "recipe_path": merge_shown}, emitter, plan.merge)
    if plan.generation_config is not None:  # what the recipe's generation_config key points at
        out[plan.generation_config_path] = json.dumps(plan.generation_config, indent=2) + "\n"
    return out


def _context(plan: Plan, sft_path: str, merge_path: str | None) -> dict[str, Any]:
    preset = plan.preset
    model = preset.hub_id or plan.model_path
    if plan.model_path != (preset.hub_id or preset.model_path):
        model = plan.model_path
    if preset.tiny:
        model = f"{plan.model_path} (random weights, built by r1sft.tiny)"
    method = METHOD_NAMES[plan.method]
    if plan.datasets == [SAMPLE_DATASET]:
        data = [
            f"{SAMPLE_DATASET}, the bundled sample ({plan.train['dataset_dir']}/dataset_info.json), so this runs as-is.",
            "For real data: r1sft convert SOURCE --input FILE --output data/<name>.jsonl (registers <name> in",
            f"data/dataset_info.json), then re-render: {plan.make_command} DATASET=<name>[,<name>...]",
        ]
    else:
        data = [f"{', '.join(plan.datasets)}, registered in {plan.train['dataset_dir']}/dataset_info.json."]
    if plan.special_tokens:
        data.append(f"Adds special tokens {', '.join(plan.special_tokens)} (from the data's r1sft.special_tokens).")
    machine = (
        f"preset={preset.name} method={plan.method} gpus={plan.gpus} nodes={plan.nodes} "
        f"gpu_mem={plan.gpu_mem:g} global_batch={plan.global_batch}"
    )
    if plan.samples_per_pack is not None:
        machine += f" samples_per_pack={plan.samples_per_pack:.2f}"
    if plan.sequence_parallel > 1:  # not a LLaMA-Factory key: r1sft train reads it here
        machine += f" sequence_parallel={plan.sequence_parallel}"
    if plan.mlp_tile_tokens:  # not a LLaMA-Factory key: r1sft train reads it here
        machine += f" tiled_mlp={plan.mlp_tile_tokens}"
    if plan.memory.host:  # what r1sft train checks the machine's free RAM against
        need = host_ram_needed(plan.memory, plan.preset.shape, plan.gpus * plan.nodes)
        machine += f" host_ram_gib={need / 1024**3:.0f}"
    return {
        "title": f"{method} SFT of {model} with LLaMA-Factory 0.9.5",
        "preset": preset,
        "plan": plan,
        "command": plan.command,
        "make_command": plan.make_command,
        "sft_path": sft_path,
        "merge_path": merge_path,
        "check_paths": " ".join(filter(None, [sft_path, merge_path])),
        "data_lines": data,
        "hardware": plan.hardware,
        "memory_line": plan.memory_line,
        "reasons": plan.header_reasons,
        "warnings": plan.warnings,
        "nodes": plan.nodes,
        "cpu": plan.cpu,
        "machine_line": machine,
    }


def write_files(files: dict[Path, str]) -> list[Path]:
    """Write each file atomically (temp file in the same folder, then os.replace)."""
    for path, text in files.items():
        atomic_write_text(path, text)
    return list(files)
