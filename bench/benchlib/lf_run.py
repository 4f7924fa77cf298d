"""Run one LLaMA-Factory training config and measure it (the process the benchmark launches for each arm).

``python lf_run.py CONFIG.yaml RESULT.json START END PROFILE_STEPS`` (positional: torchrun would claim
``--start`` as an abbreviation of its own ``--start-method``)

It calls ``llamafactory.train.tuner.run_exp`` exactly as ``llamafactory-cli train`` does (under torchrun when the
config uses DeepSpeed), patches nothing in LLaMA-Factory, and adds one TrainerCallback, ``callback.BenchCallback``
(the one ``trl_run.py`` adds to the peer arms), which counts tokens and documents, records losses, times the
measured window, profiles the steps after it and writes RESULT.json.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchlib, when run as a script

from benchlib.callback import BenchCallback, cap_memory_from_env, runner_args  # noqa: E402


def main() -> int:
    t0 = time.perf_counter()
    args = runner_args()
    import yaml
    from llamafactory.train.tuner import run_exp

    with open(args.config) as fh:
        config = yaml.safe_load(fh)
    cap_memory_from_env()
    from r1sft.patches import registry

    registry.install_from_env()  # what the sitecustomize of r1sft's launches does
    callback = BenchCallback(args.start, args.end, args.profile_steps, args.result, {"t0": t0})
    run_exp(args=config, callbacks=[callback])
    if int(os.environ.get("RANK", "0")) == 0:
        callback.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
