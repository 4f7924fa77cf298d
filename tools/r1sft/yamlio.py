"""Safe YAML in, atomic text out: the two file habits every r1sft module shares."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml

from r1sft.errors import R1sftError


def read_text(path: str | os.PathLike) -> str:
    """A text file's contents; a missing, unreadable or non-UTF-8 file is a one-line R1sftError naming it."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise R1sftError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise R1sftError(f"{path}: is a folder, expected a file") from None
    except UnicodeDecodeError as exc:
        raise R1sftError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                         "save it as UTF-8") from None
    except OSError as exc:
        raise R1sftError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping with ``yaml.safe_load``; a missing file or bad YAML is a one-line R1sftError."""
    path = Path(path)
    text = read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f": line {mark.line + 1}" if mark else ""
        raise R1sftError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise R1sftError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary shared files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


YAML11_WORDS = frozenset({"yes", "no", "on", "off", "y", "n"})  # booleans to OmegaConf, text to half the fields


def parse_scalar(text: str):
    """A command-line value as LLaMA-Factory reads the same text in a recipe (OmegaConf's YAML loader), except
    ``yes``/``no``/``on``/``off``: OmegaConf makes those booleans, which breaks string fields whose values they are
    (``save_strategy=no``), so they stay text here and ``r1sft.recipe.lf.coerce_booleans`` turns them into booleans
    for the fields LLaMA-Factory declares ``bool`` (``enable_liger_kernel=off``). ``1e-4`` is a number,
    ``2024-01-01`` text; text that is not a YAML value (``a: b``, ``- x``) stays text.
    """
    from omegaconf import OmegaConf

    stripped = text.strip()
    if not stripped:
        return ""
    if stripped.lower() in YAML11_WORDS:
        return stripped
    try:
        return OmegaConf.to_container(OmegaConf.create(f"v: {stripped}"))["v"]
    except Exception:  # noqa: BLE001 - yaml and OmegaConf errors alike: not a YAML value, so the text itself
        return text


def parse_assignments(items: list[str], what: str) -> dict:
    """``["max_steps=20", "learning_rate=2e-5"]`` -> ``{"max_steps": 20, "learning_rate": 2e-05}``.

    ``what`` names the option in errors (``--set``, ``override``). Values are single scalars (``parse_scalar``).
    """
    out: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise R1sftError(f"{what} {item!r}: expected KEY=VALUE (for example max_steps=100)")
        value = parse_scalar(text)
        if isinstance(value, (dict, list)):
            raise R1sftError(f"{what} {key}: expected a single value, got {type(value).__name__}")
        out[key] = value
    return out


@contextlib.contextmanager
def atomic_folder(out: Path) -> Iterator[Path]:
    """A folder written into a temporary sibling (yielded) and renamed into place when the block succeeds, so an
    interrupted build never leaves a half-written folder that would be taken for the real one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
