"""Loaded by Python at start-up in the processes ``r1sft train`` launches (its folder is put first on PYTHONPATH).

Installs the start-up patches the launcher switched on through their environment variables
(``r1sft.patches.registry.PATCHES``), in the launcher's process and in every torchrun worker. Anything else:
nothing. Then hands over to the ``sitecustomize`` this one shadows, if the environment has one.
"""

import importlib.util
import os
import sys


def _chain_next_sitecustomize() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    for entry in rest:
        candidate = os.path.join(entry or ".", "sitecustomize.py")
        if os.path.isfile(candidate):
            spec = importlib.util.spec_from_file_location("_r1sft_next_sitecustomize", candidate)
            if spec and spec.loader:
                spec.loader.exec_module(importlib.util.module_from_spec(spec))
            return


if any(key.startswith("R1SFT_") for key in os.environ):  # cheap test first: importing r1sft is for launched runs
    try:
        from r1sft.patches import registry

        registry.install_from_env()
    except Exception as exc:  # noqa: BLE001 - a start-up patch must never stop the interpreter
        print(f"r1sft: start-up patches not installed ({exc})", file=sys.stderr)
_chain_next_sitecustomize()
