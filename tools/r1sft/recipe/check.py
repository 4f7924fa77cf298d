"""``r1sft check``: would LLaMA-Factory accept this recipe, and would it do what r1sft planned?

First LLaMA-Factory's own parser (the dataclasses behind ``llamafactory-cli train``/``export``, extra keys refused,
plus the device-independent checks of ``get_train_args``), then what that parser cannot see: datasets registered
with their files present, a template that matches the model, the DeepSpeed file, the global-batch arithmetic the
header promises, and a merge recipe that matches its training recipe. Each problem is one line naming the file.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1sft import paths
from r1sft.presets import family_for_model_type, presets, read_config
from r1sft.recipe.data import dataset_files_missing, empty_dataset, load_dataset_info, special_tokens
from r1sft.recipe.overrides import cancelled

HEADER = re.compile(r"^#\s*r1sft:\s*(?P<fields>.*)$", re.MULTILINE)


def parse_header(text: str) -> dict[str, str]:
    """The ``# r1sft: key=value ...`` fields of a recipe r1sft wrote ({} for any other)."""
    match = HEADER.search(text)
    return dict(part.split("=", 1) for part in match.group("fields").split() if "=" in part) if match else {}


@dataclass
class _Recipe:
    shown: str  # the path as the user gave it
    path: Path
    args: dict[str, Any] = field(default_factory=dict)
    header: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    loaded: bool = False
    text: str = ""

    @property
    def is_export(self) -> bool:
        return "export_dir" in self.args

    def problem(self, message: str) -> None:
        self.problems.append(f"{self.shown}: {message}")


def _load(shown: str, path: Path) -> _Recipe:
    """Read a recipe file the way LLaMA-Factory does (OmegaConf), plus r1sft's ``# r1sft:`` header line."""
    recipe = _Recipe(shown=shown, path=path)
    if not path.is_file():
        recipe.problem("no such file")
        return recipe
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        recipe.problem(f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); save it as UTF-8")
        return recipe
    except OSError as exc:
        recipe.problem(f"cannot read it ({exc.strerror or exc})")
        return recipe
    return _parse(recipe, text)


def _parse(recipe: _Recipe, text: str) -> _Recipe:
    """Fill ``recipe`` from its YAML text, or record why LLaMA-Factory could not read it."""
    from omegaconf import OmegaConf

    try:
        args = OmegaConf.to_container(OmegaConf.create(text), resolve=True)
    except Exception as exc:  # noqa: BLE001 - OmegaConf and yaml errors alike: report, never crash
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        recipe.problem(f"not valid YAML: {message}")
        return recipe
    if not isinstance(args, dict):
        recipe.problem(f"expected a mapping of LLaMA-Factory arguments, got {type(args).__name__}")
        return recipe
    recipe.args = {str(k): v for k, v in args.items()}
    recipe.header = parse_header(text)
    recipe.text = text
    recipe.loaded = True
    return recipe


def _resolve(root: Path, value: str) -> Path:
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else root / candidate


def _looks_local(value: str, root: Path) -> bool:
    """A model_name_or_path meant as a folder (not a hub id)."""
    if value.startswith((".", "/", "~")) or value.count("/") != 1:
        return True
    return _resolve(root, value).exists()


def _family_of(model: str, root: Path) -> tuple[Any, str | None]:
    """(family or None, problem or None) for a model_name_or_path."""
    for preset in presets().values():
        if preset.hub_id and preset.hub_id.lower() == model.lower():
            return preset.family, None
    if _looks_local(model, root):
        folder = _resolve(root, model)
        if not (folder / "config.json").is_file():
            hint = ""
            tiny = next((p for p in presets().values() if p.tiny and folder == paths.TINY_MODELS_DIR / p.name), None)
            if tiny is not None:
                hint = f" (build it: `r1sft recipe {tiny.name}` or r1sft.tiny.ensure_tiny_model)"
            return None, f"model folder {model} has no config.json{hint}"
        model_type = read_config(folder).get("model_type", "")
        return family_for_model_type(model_type), None
    return None, None


def _check_model_and_template(recipe: _Recipe, root: Path) -> None:
    from r1sft.recipe import lf

    model = recipe.args.get("model_name_or_path")
    template = recipe.args.get("template")
    family = None
    if isinstance(model, str) and model:
        family, problem = _family_of(model, root)
        if problem:
            recipe.problem(problem)
    if template is None:
        recipe.problem("no template: LLaMA-Factory would fall back to the tokenizer's own chat template")
        return
    if not isinstance(template, str):
        return
    if template not in lf.template_names():
        import difflib

        pool = list(family.templates) if family else sorted(lf.template_names())
        close = difflib.get_close_matches(template, pool, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        recipe.problem(f"template '{template}' is not a LLaMA-Factory 0.9.5 template{hint}")
    elif family is not None and template not in family.templates:
        recipe.problem(
            f"template '{template}' does not match {model}, a {family.name} model: use {' or '.join(family.templates)}"
        )


def _context_window(model: str, root: Path) -> int | None:
    """The longest context ``model`` was trained for: its preset's, or its folder's config.json's."""
    for preset in presets().values():
        if preset.hub_id and preset.hub_id.lower() == model.lower():
            return preset.shape.max_ctx or None
    folder = _resolve(root, model)
    if _looks_local(model, root) and (folder / "config.json").is_file():
        return int(read_config(folder).get("max_position_embeddings") or 0) or None
    return None


def _check_context(recipe: _Recipe, root: Path) -> None:
    """A cutoff_len beyond the model's context window (``make recipe`` refuses it; an edit can bring it back)."""
    cutoff, model = recipe.args.get("cutoff_len"), recipe.args.get("model_name_or_path")
    if not _number(cutoff) or not isinstance(model, str) or not model or recipe.args.get("rope_scaling"):
        return  # rope_scaling: LLaMA-Factory stretches the context to cutoff_len
    window = _context_window(model, root)
    if window and cutoff > window:
        recipe.problem(f"cutoff_len {cutoff} exceeds {model}'s context window of {window} tokens: set cutoff_len: "
                       f"{window} or less (or rope_scaling: yarn to stretch the context)")


def _check_datasets(recipe: _Recipe, root: Path) -> None:
    names = recipe.args.get("dataset")
    if not names:
        return
    dataset_dir = _resolve(root, str(recipe.args.get("dataset_dir", "data")))
    info = load_dataset_info(dataset_dir)
    if info is None:
        recipe.problem(f"dataset_dir {recipe.args.get('dataset_dir', 'data')} has no dataset_info.json")
        return
    needed: list[str] = []
    for name in [part.strip() for part in str(names).split(",") if part.strip()]:
        if name not in info:
            recipe.problem(f"dataset '{name}' is not registered in {dataset_dir.name}/dataset_info.json")
            continue
        missing = dataset_files_missing(info[name], dataset_dir)
        if missing:
            recipe.problem(f"dataset '{name}': {missing}")
        elif empty := empty_dataset(name, info[name], dataset_dir):
            recipe.problem(empty)
            continue  # nothing to say about the lengths of no rows
        needed += [token for token in special_tokens(info[name]) if token not in needed]
        _check_length_filter(recipe, name, info[name])
    have = _tokens(recipe.args.get("add_special_tokens"))
    lacking = [token for token in needed if token not in have]
    if lacking:
        recipe.problem(
            f"the data needs special tokens {','.join(lacking)} (dataset_info.json r1sft.special_tokens) but "
            "add_special_tokens does not list them"
        )


def _check_length_filter(recipe: _Recipe, name: str, entry: dict) -> None:
    """LLaMA-Factory truncates samples longer than cutoff_len: the chain of thought loses its end and its EOS.

    A dataset converted with ``--max-tokens N`` holds no sample over N templated tokens, so N <= cutoff_len is the
    guarantee that every trained sample keeps its end-of-turn token; anything else is reported.
    """
    cutoff = recipe.args.get("cutoff_len", 2048)
    max_tokens = (entry.get("r1sft") or {}).get("max_tokens")
    if max_tokens is None:
        print(f"note: {recipe.shown}: dataset '{name}' was not length-filtered: samples over cutoff_len {cutoff} "
              f"tokens will be truncated and lose their end-of-turn token; convert it with --max-tokens {cutoff} "
              "--tokenizer <model> to drop and count them instead", file=sys.stderr)
    elif isinstance(cutoff, int) and max_tokens > cutoff:
        recipe.problem(f"dataset '{name}' was filtered at --max-tokens {max_tokens} > cutoff_len {cutoff}: samples "
                       f"between the two would be truncated (losing their end-of-turn token); re-convert with "
                       f"--max-tokens {cutoff} or raise cutoff_len")


def _tokens(value: Any) -> list[str]:
    if not value:
        return []
    return [token.strip() for token in str(value).split(",") if token.strip()]


def _check_deepspeed(recipe: _Recipe, root: Path) -> bool:
    """Whether the DeepSpeed file (if any) can be handed to the parser."""
    value = recipe.args.get("deepspeed")
    if value is None:
        return True
    if not isinstance(value, str):
        return True  # an inline dict: the parser judges it
    path = _resolve(root, value)
    if not path.is_file():
        recipe.problem(f"deepspeed config {value} does not exist")
        return False
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        recipe.problem(f"deepspeed config {value} is not valid JSON: {exc}")
        return False
    stage = config.get("zero_optimization", {}).get("stage") if isinstance(config, dict) else None
    if stage not in (0, 1, 2, 3):
        recipe.problem(f"deepspeed config {value} has no zero_optimization.stage")
    return True


def _check_packing(recipe: _Recipe, header: dict, packs: int, global_batch: int, ranks: int) -> None:
    """Packed recipes count packs per step: packs x samples per pack should land near the global batch."""
    try:
        per_pack = float(header["samples_per_pack"])
    except (KeyError, ValueError):  # not planned by r1sft --packing: nothing to compare with
        return
    samples = packs * per_pack
    # accumulation is rounded per rank, and never below one pack
    if packs > ranks and abs(samples - global_batch) > ranks * per_pack / 2 + 1e-6:
        recipe.problem(f"{packs} packs per step x ~{per_pack:g} samples = ~{samples:.0f} samples, far from the "
                       f"header's global batch {global_batch}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)  # other types: the type check reports


def _check_numbers(recipe: _Recipe) -> None:
    """Values the parser takes without a word but that cannot train: a zero batch, a negative rate, no epochs."""
    args = recipe.args
    for key in ("per_device_train_batch_size", "gradient_accumulation_steps", "cutoff_len"):
        value = args.get(key)
        if _number(value) and value < 1:
            recipe.problem(f"{key} is {value}: expected a positive integer")
    lr = args.get("learning_rate")
    if _number(lr) and lr < 0:
        recipe.problem(f"learning_rate is {lr}: expected a positive number (for example 1e-5)")
    epochs, max_steps = args.get("num_train_epochs", 3.0), args.get("max_steps", -1)
    if _number(epochs) and epochs <= 0 and not (_number(max_steps) and max_steps > 0):
        recipe.problem(f"num_train_epochs is {epochs} and no max_steps: nothing would be trained; "
                       "expected num_train_epochs > 0 or max_steps > 0")


def _check_batch(recipe: _Recipe) -> None:
    if recipe.args.get("packing") and not recipe.args.get("neat_packing"):
        recipe.problem("packing: true without neat_packing: true lets packed samples attend to each other "
                       "(cross-sample contamination); set neat_packing: true")
    header = recipe.header
    if "global_batch" not in header:
        return
    try:
        gpus, nodes, global_batch = int(header.get("gpus", 1)), int(header.get("nodes", 1)), int(header["global_batch"])
    except ValueError:
        recipe.problem(f"unreadable '# r1sft:' header: {header}")
        return
    pdb = recipe.args.get("per_device_train_batch_size", 8)  # transformers' default
    ga = recipe.args.get("gradient_accumulation_steps", 1)
    if not (isinstance(pdb, int) and isinstance(ga, int)) or pdb < 1 or ga < 1:
        return  # the type and number checks report it
    split = header.get("sequence_parallel", "1")
    split = int(split) if split.isdigit() and int(split) > 0 else 1
    ranks = max(1, gpus or split) * nodes // max(1, split)  # data-parallel ranks: a split trace's ranks read one batch
    total = pdb * ga * ranks
    if recipe.args.get("packing"):
        _check_packing(recipe, header, total, global_batch, ranks)
    elif total != global_batch:
        where = "1 CPU process" if gpus == 0 else f"{gpus} GPUs x {nodes} node{'s' if nodes > 1 else ''}"
        recipe.problem(
            f"per_device_train_batch_size {pdb} x gradient_accumulation_steps {ga} x {where} = {total}, "
            f"but the header plans a global batch of {global_batch}"
        )
    if gpus == 0:
        if recipe.args.get("bf16") and not recipe.args.get("use_cpu"):
            recipe.problem("bf16: true on a CPU recipe (gpus=0) fails without use_cpu: true")
        if recipe.args.get("enable_liger_kernel"):
            recipe.problem("enable_liger_kernel: true on a CPU recipe (gpus=0): liger needs a CUDA GPU")
        # deepspeed is allowed: `r1sft recipe --deepspeed z3` on CPU runs DeepSpeed's CPU accelerator (slow, real:
        # how the ZeRO-3 launch path is tested without a GPU)


def _parse_with_llamafactory(recipe: _Recipe, root: Path, deepspeed_ok: bool) -> None:
    from r1sft.recipe import lf

    kind = lf.EXPORT if recipe.is_export else lf.TRAIN
    unknown = lf.unknown_keys(recipe.args, kind)
    what = "export (merge)" if kind == lf.EXPORT else "training"
    for key, close in unknown:
        hint = f" (did you mean '{close}'?)" if close else ""
        recipe.problem(f"unknown key '{key}'{hint}: not a LLaMA-Factory 0.9.5 {what} argument")
    types = lf.type_problems(recipe.args, kind)
    for message in types:
        recipe.problem(message)
    if unknown or types:
        return  # the parser would stop at the first of these
    args = dict(recipe.args)
    if "deepspeed" in args:
        if not deepspeed_ok:
            args.pop("deepspeed")
        elif isinstance(args["deepspeed"], str):
            args["deepspeed"] = str(_resolve(root, args["deepspeed"]))
    try:
        lf.parse(args, kind)
    except (ValueError, TypeError, AssertionError, OSError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        recipe.problem(f"LLaMA-Factory rejects it: {message}")


def _check_export(recipe: _Recipe) -> None:
    args = recipe.args
    if args.get("quantization_bit") is not None:
        recipe.problem("quantization_bit in a merge recipe: never merge an adapter into a quantized model; remove it")
    if args.get("adapter_name_or_path") and args.get("finetuning_type", "lora") != "lora":
        recipe.problem("adapter_name_or_path needs finetuning_type: lora")


def _note_plain_export(recipe: _Recipe, root: Path) -> None:
    """Where plain llamafactory-cli export would not give a model that matches training (r1sft.recipe.exports)."""
    from r1sft.recipe.exports import export_notes

    for note in export_notes(recipe.args, root):
        print(f"note: {recipe.shown}: {note}", file=sys.stderr)


def _same_path(a: Any, b: Any) -> bool:
    def norm(value: Any) -> str:
        text = str(value).strip().rstrip("/")
        return text[2:] if text.startswith("./") else text

    return a is not None and b is not None and norm(a) == norm(b)


def _check_pair(train: _Recipe, merge: _Recipe) -> None:
    """A merge recipe must rebuild exactly the model its training recipe trained."""
    t, m = train.args, merge.args
    other = train.shown
    if t.get("finetuning_type", "lora") != "lora":
        merge.problem(f"{other} is {t.get('finetuning_type')} fine-tuning: there is no adapter to merge")
        return
    if t.get("model_name_or_path") != m.get("model_name_or_path"):
        merge.problem(
            f"model_name_or_path {m.get('model_name_or_path')} differs from {other}'s {t.get('model_name_or_path')}"
        )
    if t.get("template") != m.get("template"):
        merge.problem(f"template {m.get('template')} differs from {other}'s {t.get('template')}")
    if _tokens(t.get("add_special_tokens")) != _tokens(m.get("add_special_tokens")):
        merge.problem(
            f"add_special_tokens '{m.get('add_special_tokens') or ''}' differs from {other}'s "
            f"'{t.get('add_special_tokens') or ''}': merging fails with a size mismatch"
        )
    if not _same_path(m.get("adapter_name_or_path"), t.get("output_dir")):
        merge.problem(
            f"adapter_name_or_path {m.get('adapter_name_or_path')} is not {other}'s output_dir {t.get('output_dir')}"
        )


def _sibling(path: Path, kind: str) -> Path | None:
    name = path.name
    if kind == "merge" and name.endswith("_sft.yaml"):
        return path.with_name(name[: -len("_sft.yaml")] + "_merge.yaml")
    if kind == "train" and name.endswith("_merge.yaml"):
        return path.with_name(name[: -len("_merge.yaml")] + "_sft.yaml")
    return None


def _check_each(recipes: list[_Recipe], root: Path) -> None:
    for recipe in recipes:
        if not recipe.loaded:
            continue
        deepspeed_ok = _check_deepspeed(recipe, root) if not recipe.is_export else True
        _parse_with_llamafactory(recipe, root, deepspeed_ok)
        _check_model_and_template(recipe, root)
        if recipe.is_export:
            _check_export(recipe)
            _note_plain_export(recipe, root)
        else:
            _check_numbers(recipe)
            _check_context(recipe, root)
            _check_datasets(recipe, root)
            _check_batch(recipe)
            for message in cancelled(recipe.args):
                recipe.problem(message)


def _pair_up(recipes: list[_Recipe], *, siblings_on_disk: bool) -> list[_Recipe]:
    """Check each merge recipe against its training recipe; returns the siblings read from disk for it."""
    trains = [r for r in recipes if r.loaded and not r.is_export]
    merges = [r for r in recipes if r.loaded and r.is_export]
    extra: list[_Recipe] = []
    paired: set[int] = set()
    for train in trains:
        sibling = _sibling(train.path, "merge")
        match = next((m for m in merges if sibling and m.path.resolve() == sibling.resolve()), None)
        if match is None and len(trains) == 1 and len(merges) == 1:
            match = merges[0]
        if match is None and siblings_on_disk and sibling and sibling.is_file():
            match = _load(str(sibling), sibling)
            extra.append(match)
        if match is not None and match.loaded:
            _check_pair(train, match)
            paired.add(id(match))
    for merge in merges:
        if id(merge) in paired or not siblings_on_disk:
            continue
        sibling = _sibling(merge.path, "train")
        if sibling and sibling.is_file():
            train = _load(str(sibling), sibling)
            if train.loaded and not train.is_export:
                _check_pair(train, merge)
    return extra


def _check_here(recipes: list[_Recipe]) -> None:
    """``--here``: can this machine launch each training recipe as planned (the launcher's GPU pre-flight)."""
    import os

    from r1sft.recipe.machine import gpu_problem, visible_gpu_count

    trains = [r for r in recipes if r.loaded and not r.is_export]
    visible = visible_gpu_count() if trains else 0
    for recipe in trains:
        problem = gpu_problem(recipe.args, recipe.header, recipe.text, visible, os.environ.get("NPROC_PER_NODE"))
        if problem:
            recipe.problem(problem)


def check_recipes(recipe_paths: list[str | Path], *, root: Path | None = None, here: bool = False) -> list[str]:
    """Problems (``path: message`` lines) in the given recipes; an empty list when all pass.

    Training and merge recipes are paired: a merge given alongside its training recipe (``X_sft.yaml`` and
    ``X_merge.yaml``, or the only one of each), else the sibling file on disk, is checked against it. ``here``:
    also whether this machine has the GPUs each training recipe was planned for.
    """
    root = root or paths.REPO_ROOT
    recipes = [_load(str(p), Path(p)) for p in recipe_paths]
    _check_each(recipes, root)
    if here:
        _check_here(recipes)
    extra = _pair_up(recipes, siblings_on_disk=True)
    return [line for recipe in recipes + extra for line in recipe.problems]


def check_texts(files: dict[Path, str], *, root: Path | None = None, shown: dict[Path, str] | None = None) -> list[str]:
    """``check_recipes`` for recipes not yet written: {path it will have: YAML text}, as ``render_recipe`` returns.

    The same checks, but a merge recipe is paired only with a training recipe among ``files``: files already on
    disk are about to be replaced, so they say nothing about these. ``shown`` names the files in problems.
    """
    root = root or paths.REPO_ROOT
    shown = shown or {}
    recipes = [_parse(_Recipe(shown=shown.get(path, str(path)), path=Path(path)), text) for path, text in files.items()]
    _check_each(recipes, root)
    _pair_up(recipes, siblings_on_disk=False)
    return [line for recipe in recipes for line in recipe.problems]


def check_recipe(path: str | Path, *, root: Path | None = None) -> list[str]:
    """Problems in one recipe (and its sibling merge or training recipe when that exists)."""
    return check_recipes([path], root=root)
