"""Launch ``llamafactory-cli train`` the one right way, on 1 GPU, N GPUs or N nodes (what ``run_sft.sh`` calls).

LLaMA-Factory's launcher decides everything from the environment: it runs under torchrun only when
``FORCE_TORCHRUN=1`` or several GPUs are visible (DeepSpeed needs torchrun even on one GPU), reads ``NNODES``,
``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` and ``NPROC_PER_NODE``, picks a random port unless told (which breaks
multi-node), calls a bare ``torchrun`` from PATH and rebuilds its argv by splitting on spaces. This module sets that
environment, applies ``key=value`` overrides (and what they imply), refuses what the launch would trip on (too few
GPUs, ``r1sft check``), resumes from the newest checkpoint, and runs training with a quiet console (``process``).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

from r1sft.errors import R1sftError
from r1sft.patches import registry
from r1sft.paths import REPO_ROOT
from r1sft.recipe.machine import available_ram_gib, gpu_problem, host_ram_problem, planned_gpus, visible_gpu_count
from r1sft.train.checkpoints import newest_checkpoint, shown
from r1sft.train.process import run_logged
from r1sft.train.switches import patch_switches, planned_uncheckpointed_layers
from r1sft.yamlio import atomic_write_text, load_yaml, parse_assignments

DEFAULT_MASTER_PORT = "29500"
# Set for GPU runs unless the user set them: expandable segments cut the peak of long, variable-length R1 batches by
# ~15 GiB on an H100 (Qwen2.5-1.5B full SFT at 16k, docs/bench/h100-explore-1.5b.md) and made steps ~6% faster.
PERFORMANCE_ENV = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}


def parse_overrides(pairs: list[str]) -> dict:
    """``["max_steps=20", "learning_rate=2e-5"]`` -> typed dict (as ``--set``), refusing what torchrun would break."""
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", key.strip()):
            raise R1sftError(f"override {pair!r}: expected key=value (for example max_steps=100)")
        if any(ch.isspace() for ch in value):
            raise R1sftError(f"override {pair!r}: values cannot contain spaces (LLaMA-Factory's launcher splits "
                             "its arguments on spaces); edit the recipe instead")
    from r1sft.recipe import lf

    return lf.coerce_booleans(parse_assignments(pairs, "override"), lf.TRAIN)


def recipe_header(recipe: Path) -> dict[str, str]:
    """The ``# r1sft: key=value ...`` fields of a recipe r1sft wrote ({} for any other)."""
    from r1sft.recipe.check import parse_header

    return parse_header(recipe.read_text(encoding="utf-8", errors="replace"))


def _count(env: Mapping[str, str], key: str, default: str, least: int = 1) -> int:
    value = (env.get(key) or default).strip()
    if not value.isdigit() or int(value) < least:
        raise R1sftError(f"{key}={value}: expected a whole number of at least {least}")
    return int(value)


def world_size_warning(header: Mapping[str, str], env: Mapping[str, str]) -> str | None:
    """A line when the launch's processes differ from those the recipe's global batch was planned for."""
    try:  # a CPU recipe plans one process, or one per shard of a trace (--sequence-parallel)
        planned = (int(header["gpus"]) or int(header.get("sequence_parallel", 1))) * max(1, int(header.get("nodes", 1)))
        batch = int(header["global_batch"])
    except (KeyError, ValueError):
        return None
    actual = int(env["NPROC_PER_NODE"]) * int(env["NNODES"])
    if actual == planned:
        return None
    return (f"r1sft: warning: the recipe plans a global batch of {batch} for {planned} process"
            f"{'es' if planned > 1 else ''}; this launch runs {actual}, so each optimizer step holds "
            f"{batch * actual // planned} samples (re-render it for this hardware: make recipe ... GPUS= NODES=)")


def sequence_parallel_degree(header: Mapping[str, str], env: Mapping[str, str]) -> int:
    """Ranks per trace: ``R1SFT_SEQUENCE_PARALLEL`` when set, else the recipe's ``# r1sft: sequence_parallel=``."""
    from r1sft.patches import sequence_parallel

    value = env.get(sequence_parallel.ENV_VAR) or header.get("sequence_parallel") or "1"
    return _count({"sequence_parallel": value}, "sequence_parallel", "1")


def mlp_tile_tokens(header: Mapping[str, str] | None) -> int:
    """Tokens per MLP tile the recipe's plan needs (its ``# r1sft: tiled_mlp=``), 0 for none."""
    value = (header or {}).get("tiled_mlp", "0")
    if not value.isdigit():
        raise R1sftError(f"the recipe header's tiled_mlp={value}: expected a whole number of tokens")
    return int(value)


def _check_sequence_parallel(config: dict, split: int, nproc: int) -> None:
    if split <= 1:
        return
    from r1sft.patches import sequence_parallel

    problems = sequence_parallel.config_problems(config, split)
    if nproc % split:
        problems.insert(0, f"NPROC_PER_NODE={nproc} is not a multiple of {split}: a trace's shards stay on one node")
    if problems:
        raise R1sftError(f"sequence parallelism {split}: {problems[0]}")


def launch_environment(config: dict, environ: dict[str, str] | None = None, header: Mapping[str, str] | None = None,
                       visible: int | None = None) -> dict[str, str]:
    """The environment LLaMA-Factory's launcher needs for this config on this machine (``header``: the recipe's
    ``# r1sft:`` fields, where r1sft planned it; ``visible``: the GPUs this machine shows, when known)."""
    env = dict(os.environ if environ is None else environ)
    nnodes = _count(env, "NNODES", "1")
    if nnodes > 1:
        missing = [key for key in ("MASTER_ADDR", "NODE_RANK") if not env.get(key)]
        if missing:  # the defaults (127.0.0.1, rank 0 everywhere) would leave every node waiting for the others
            raise R1sftError(f"NNODES={nnodes}: set {' and '.join(missing)} on every node (MASTER_ADDR: the address "
                             f"of the node with NODE_RANK=0; NODE_RANK: 0..{nnodes - 1}, one per node)")
        rank = _count(env, "NODE_RANK", "0", least=0)
        if rank >= nnodes:
            raise R1sftError(f"NODE_RANK={rank}: expected 0..{nnodes - 1} for NNODES={nnodes}")
    split = sequence_parallel_degree(header or {}, env)
    if not env.get("NPROC_PER_NODE"):
        # A CPU recipe (use_cpu) plans its global batch for one process, whatever GPUs the machine has; one
        # split over N processes (--sequence-parallel, r1sft's test path) for N.
        if config.get("use_cpu"):
            env["NPROC_PER_NODE"] = str(split)
        else:
            if visible is None:
                visible = visible_gpu_count(env, ask_torch=False)
            env["NPROC_PER_NODE"] = str(visible or split)  # no GPU (DeepSpeed's CPU path): one or the split
    nproc = _count(env, "NPROC_PER_NODE", "1")
    _check_sequence_parallel(config, split, nproc)
    if config.get("deepspeed") or nproc > 1 or nnodes > 1:
        env["FORCE_TORCHRUN"] = "1"
    if not config.get("use_cpu"):
        for key, value in PERFORMANCE_ENV.items():
            env.setdefault(key, value)
    world = nproc * nnodes
    layers = planned_uncheckpointed_layers(config, header or {}, world, env, sequence_parallel=split)
    switches = patch_switches(config, env, layers, sequence_parallel=split, mlp_tile_tokens=mlp_tile_tokens(header))
    env.update(switches)
    if registry.any_enabled(switches):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(registry.SITE_DIR), env.get("PYTHONPATH", "")]))
    env["NNODES"] = str(nnodes)
    env.setdefault("NODE_RANK", "0")
    env.setdefault("MASTER_ADDR", "127.0.0.1")
    if nnodes > 1 or env.get("FORCE_TORCHRUN") == "1":
        # A random port per node would never meet: every node must agree on one.
        env.setdefault("MASTER_PORT", DEFAULT_MASTER_PORT)
    venv_bin = str(Path(sys.executable).parent)
    if venv_bin not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    return env


def refuse_spaces(path: Path, what: str) -> None:
    if any(ch.isspace() for ch in str(path)):
        raise R1sftError(f"{what} {str(path)!r} contains a space: LLaMA-Factory's launcher splits its arguments on "
                         "spaces, so training would fail under torchrun; move or rename it")


TOKENIZED_BY_R1SFT = re.compile(r"^\.cache/tokenized/.+-[0-9a-f]{8}$")


def _follow_tokenization(config: dict, header: Mapping[str, str], say=print) -> None:
    """r1sft names ``tokenized_path`` after the tokenization settings; LLaMA-Factory reuses the folder whatever the
    settings, so an override or an edit (another cutoff_len, dataset, template) must get its own folder."""
    current = str(config.get("tokenized_path") or "")
    if not header.get("preset") or not TOKENIZED_BY_R1SFT.match(current) or not config.get("dataset"):
        return
    from r1sft.recipe.request import split_names
    from r1sft.recipe.values import tokenized_path

    wanted = tokenized_path(config, header["preset"], split_names(config["dataset"]))
    if wanted != current:
        config["tokenized_path"] = wanted
        say(f"r1sft: tokenization settings differ from the recipe's: tokenized data in {wanted}")


def prepare_launch(recipe: Path, overrides: dict, resume: bool = True, header: Mapping[str, str] | None = None,
                   notes: list[str] | None = None) -> tuple[Path, dict]:
    """Write the effective recipe (recipe + overrides + resume) next to the outputs and return it with its config.
    What it decided is printed, or added to ``notes`` for the caller to print once its checks pass."""
    say = notes.append if notes is not None else print
    config = load_yaml(recipe)
    config.update(overrides)
    _follow_tokenization(config, header or {}, say)
    output_dir = config.get("output_dir")
    if not output_dir and "export_dir" in config:
        raise R1sftError(f"{recipe}: a merge (export) recipe, not a training one: run `llamafactory-cli export "
                         f"{recipe}` or `r1sft merge {recipe}`")
    if not output_dir:
        raise R1sftError(f"{recipe}: no output_dir (expected a LLaMA-Factory training recipe)")
    output_path = (REPO_ROOT / output_dir).resolve()
    refuse_spaces(output_path, "output_dir")
    if resume and "resume_from_checkpoint" not in overrides:
        checkpoint = newest_checkpoint(output_path)
        if checkpoint is not None:
            config["resume_from_checkpoint"] = shown(checkpoint)
            say(f"r1sft: resuming from {checkpoint} (pass resume=false to start over)")
    # the progress line's tokens/s (one count per micro-batch; a packed row's mask holds segment ids, not 0/1)
    config.setdefault("include_num_input_tokens_seen", "all" if config.get("packing") else "non_padding")
    output_path.mkdir(parents=True, exist_ok=True)
    node_rank = os.environ.get("NODE_RANK", "0")
    effective = output_path / f"r1sft_launch.node{node_rank}.yaml"
    header = f"# Effective recipe written by run_sft.sh: {recipe} plus overrides {overrides or '{}'}\n"
    atomic_write_text(effective, header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return effective, config


def _overrides(recipe_path: Path, pairs: list[str], resume: bool, notes: list[str]) -> tuple[dict, bool]:
    """The typed overrides, ``resume`` taken out, with the values they imply (a note each), or R1sftError."""
    from r1sft.recipe import lf
    from r1sft.recipe.overrides import implied

    overrides = parse_overrides(pairs)
    resume_word = str(overrides.pop("resume", "true")).strip().lower()
    if resume_word not in lf.BOOLEAN_WORDS and resume_word not in ("0", "1", "none", "null"):
        raise R1sftError(f"override resume={resume_word}: expected true or false")
    resume = resume and lf.BOOLEAN_WORDS.get(resume_word, resume_word == "1")
    if overrides:  # a typo is caught here, before an output folder or an effective recipe is written
        lf.refuse_unknown_keys(overrides, lf.TRAIN, "override")
        extra, implies = implied(load_yaml(recipe_path), overrides)
        notes += [f"r1sft: {note}" for note in implies]
        overrides.update(extra)
    return overrides, resume


def _check_machine(recipe_path: Path, config: dict, header: Mapping[str, str]) -> int | None:
    """Refuse (one line naming the fix) a recipe planned for more GPUs than this machine shows, before anything is
    written. Returns the GPUs shown (None for a CPU recipe)."""
    if planned_gpus(config, header) == 0:
        return None
    visible = visible_gpu_count()
    problem = gpu_problem(config, header, recipe_path.read_text(encoding="utf-8", errors="replace"), visible,
                          os.environ.get("NPROC_PER_NODE"))
    if problem:
        raise R1sftError(f"{shown(recipe_path)}: {problem}")
    ram = host_ram_problem(header, available_ram_gib())
    if ram:
        print(f"r1sft: warning: {ram}", file=sys.stderr)
    return visible


def _check_recipe(effective: Path) -> None:
    """``r1sft check`` on the recipe as launched: one problem is the error; several are listed, then refused."""
    from r1sft.recipe.check import check_recipe

    problems = check_recipe(effective)
    if len(problems) == 1:
        raise R1sftError(problems[0])
    for problem in problems:
        print(f"r1sft check: {problem}", file=sys.stderr)
    if problems:
        raise R1sftError(f"{len(problems)} problems above; nothing launched")


def run_training(recipe: str, pairs: list[str], resume: bool = True, check: bool = True) -> int:
    recipe_path = Path(recipe).resolve()
    refuse_spaces(recipe_path, "recipe path")
    refuse_spaces(REPO_ROOT, "r1sft folder")
    if not recipe_path.is_file():
        raise R1sftError(f"{recipe}: no such recipe file")
    # said once the checks pass: a refusal is its one line
    notes = [f"r1sft: recipe {shown(recipe_path)}" + (f" with {' '.join(pairs)}" if pairs else "")]
    overrides, resume = _overrides(recipe_path, pairs, resume, notes)
    header = recipe_header(recipe_path)
    visible = _check_machine(recipe_path, {**load_yaml(recipe_path), **overrides}, header)
    effective, config = prepare_launch(recipe_path, overrides, resume=resume, header=header, notes=notes)
    os.chdir(REPO_ROOT)  # recipes use paths relative to the project root, as LLaMA-Factory's examples do
    if check:
        _check_recipe(effective)
    print("\n".join(notes), flush=True)
    env = launch_environment(config, header=header, visible=visible)
    warning = world_size_warning(header, env)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    log_path = Path(config["output_dir"]) / f"train.node{env['NODE_RANK']}.log"
    if env.get("FORCE_TORCHRUN") == "1":  # what the processes need to meet, said where there are several
        print(f"r1sft: NNODES={env['NNODES']} NODE_RANK={env['NODE_RANK']} NPROC_PER_NODE={env['NPROC_PER_NODE']} "
              f"FORCE_TORCHRUN=1 MASTER_ADDR={env['MASTER_ADDR']} MASTER_PORT={env.get('MASTER_PORT', 'auto')}",
              flush=True)
    cli = shutil.which("llamafactory-cli", path=env["PATH"])
    if cli is None:
        raise R1sftError("llamafactory-cli not found on PATH: run `make setup` or install llamafactory==0.9.5")
    verbose = os.environ.get("R1SFT_VERBOSE", "").strip().lower() in ("1", "true", "yes", "on")
    print(f"r1sft: llamafactory-cli train {shown(effective)}; full log: {log_path}"
          + ("" if verbose else " (R1SFT_VERBOSE=1 shows it here)"), flush=True)
    return run_logged([cli, "train", shown(effective)], env, log_path, config, shown(recipe_path), verbose)
