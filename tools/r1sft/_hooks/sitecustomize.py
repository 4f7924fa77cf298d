"""Loaded by Python at start-up in the processes ``r1sft train`` launches (its folder is put first on PYTHONPATH).

Turns on r1sft.packed_attention when the launcher set ``R1SFT_PACKED_ATTENTION=varlen`` (recipes with
``neat_packing: true``) and r1sft.liger_chunking when it set ``R1SFT_LIGER_CHUNKING=budget`` (recipes with
``enable_liger_kernel: true`` on GPUs), in the launcher's process and in every torchrun worker. Anything else:
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


if os.environ.get("R1SFT_PACKED_ATTENTION"):  # cheap test first: importing r1sft is only for launched runs
    try:
        import atexit

        from r1sft import packed_attention

        if packed_attention.enabled_by_env() and packed_attention.install():
            print(f"r1sft: packed samples attend through varlen attention (pid {os.getpid()})", file=sys.stderr)
            atexit.register(packed_attention.report)
    except Exception as exc:  # noqa: BLE001 - a start-up hook must never stop the interpreter
        print(f"r1sft: packed attention not installed ({exc}); LLaMA-Factory's dense mask is used",
              file=sys.stderr)
if os.environ.get("R1SFT_LIGER_CHUNKING"):
    try:
        import atexit

        from r1sft import liger_chunking

        if liger_chunking.enabled_by_env() and liger_chunking.install():
            atexit.register(liger_chunking.report)
    except Exception as exc:  # noqa: BLE001 - a start-up hook must never stop the interpreter
        print(f"r1sft: liger chunking not installed ({exc}); liger's default chunks are used", file=sys.stderr)
_chain_next_sitecustomize()
