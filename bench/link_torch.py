"""Let ``.venv-peers`` use ``.venv``'s torch instead of installing a second copy (several GB: CI's disk holds one).

Run with ``.venv``'s interpreter (``make peers`` does): it links torch, torchvision, torchaudio and everything they
need (nvidia-*, triton, sympy, ...) into a folder of ``.venv`` and puts that folder on the peer venv's path with a
``.pth`` file. Nothing else of ``.venv`` (LLaMA-Factory, its transformers) is visible to the peers, and the folder is
outside the peer venv, so a pip there that wants another version of one of these installs its own (first on the
path) and never uninstalls ``.venv``'s files through a link.

    .venv/bin/python bench/link_torch.py .venv-peers
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOTS = ("torch", "torchvision", "torchaudio")
PTH_NAME = "r1sft-torch-from-venv.pth"


def closure(roots: tuple[str, ...]) -> dict[str, metadata.Distribution]:
    """The installed distributions of ``roots`` and their run-time requirements, extras included (torch asks for
    ``cuda-toolkit[cublas,cudart,...]``: the CUDA libraries are that package's extras)."""
    found: dict[str, metadata.Distribution] = {}
    done: set[tuple[str, str]] = set()
    todo = [(name, "") for name in roots]
    while todo:
        name, extra = todo.pop()
        name = canonicalize_name(name)
        if (name, extra) in done:
            continue
        done.add((name, extra))
        try:
            dist = found[name] if name in found else metadata.distribution(name)
        except metadata.PackageNotFoundError as missing:
            if name in ROOTS:
                continue  # torchaudio/torchvision are optional for the peers; torch is checked by link
            raise SystemExit(f"link_torch: {name} is required by torch's stack but not installed in {sys.prefix}") from missing
        found[name] = dist
        for text in dist.requires or ():
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": extra}):
                todo.extend((req.name, e) for e in ("", *sorted(req.extras)))
    return found


def top_level_entries(dist: metadata.Distribution) -> set[str]:
    """The names a distribution puts directly in site-packages (its packages, modules, .libs and dist-info)."""
    names = set()
    for file in dist.files or ():
        parts = Path(file).parts
        if parts and parts[0] != ".." and not parts[0].endswith(".pth") and parts[0] != "__pycache__":
            names.add(parts[0])
    return names


def purelib(venv: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(subprocess.run([str(venv / "bin" / "python"), "-c", code], check=True, capture_output=True,
                               text=True).stdout.strip())


def link(venv: Path, links: Path) -> int:
    dists = closure(ROOTS)
    if "torch" not in dists:
        raise SystemExit(f"link_torch: no torch in {sys.prefix}: make setup first")
    site = Path(next(iter(dists.values())).locate_file(""))
    links.mkdir(parents=True, exist_ok=True)
    for old in links.iterdir():
        old.unlink()
    names = set().union(*(top_level_entries(dist) for dist in dists.values()))  # nvidia/ is shared by many
    for name in sorted(names):
        if (site / name).exists():
            (links / name).symlink_to(site / name)
    (purelib(venv) / PTH_NAME).write_text(f"{links.resolve()}\n")
    return len(dists)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("venv", type=Path, help="the peer venv (.venv-peers)")
    parser.add_argument("--links", type=Path, default=Path(sys.prefix) / "torch-for-peers",
                        help="folder of links, outside the peer venv (default: <this venv>/torch-for-peers)")
    args = parser.parse_args(argv)
    n = link(args.venv, args.links)
    print(f"link_torch: {n} distributions of torch's stack from {sys.prefix} on {args.venv}'s path")
    return 0


if __name__ == "__main__":
    sys.exit(main())
