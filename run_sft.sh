#!/usr/bin/env bash
# Train a recipe with LLaMA-Factory on 1 GPU, N GPUs or N nodes.
#
#   bash run_sft.sh                                   # the demo recipe (tiny Qwen3 + bundled sample, CPU)
#   bash run_sft.sh recipes/qwen3-8b/lora_sft.yaml    # all GPUs of this machine
#   bash run_sft.sh RECIPE max_steps=100 learning_rate=5e-5   # override recipe values
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash run_sft.sh RECIPE   # on each node, with its rank
#
# Environment: NPROC_PER_NODE (default: the visible GPUs), NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT (29500 when
# several processes must meet), R1SFT_NO_RESUME=1 to ignore existing checkpoints (or pass resume=false).
# It checks the recipe first (`r1sft check`), resumes from the newest checkpoint in output_dir, writes the log to
# output_dir/train.node<RANK>.log and exits with training's exit code.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "$root" in
  *[[:space:]]*) echo "run_sft.sh: the r1sft folder '$root' contains a space; LLaMA-Factory's launcher splits its arguments on spaces. Move it." >&2; exit 2 ;;
esac

# LLaMA-Factory's launcher calls a bare `torchrun`: the venv's bin/ must come first on PATH.
if [ -x "$root/.venv/bin/python" ]; then
  export PATH="$root/.venv/bin:$PATH"
fi
# The r1sft command, or its module where the package is importable but not installed (e.g. PYTHONPATH=tools).
if command -v r1sft >/dev/null 2>&1; then
  r1sft=(r1sft)
elif python3 -c "import r1sft" >/dev/null 2>&1; then
  r1sft=(python3 -m r1sft.cli)
else
  echo "run_sft.sh: r1sft is not installed; run 'make setup' first" >&2
  exit 2
fi

if [ "$#" -eq 0 ]; then
  recipe="$root/recipes/tiny-qwen3/lora_sft.yaml"
  if [ ! -f "$recipe" ]; then
    echo "run_sft.sh: no recipe given; preparing the demo recipe ($recipe)"
    make -C "$root" --no-print-directory demo-data
    "${r1sft[@]}" recipe tiny-qwen3 --method lora
  fi
  set -- "$recipe"
fi

recipe="$1"
shift
case "$recipe" in
  *[[:space:]]*) echo "run_sft.sh: recipe path '$recipe' contains a space; LLaMA-Factory's launcher splits its arguments on spaces. Rename or move it." >&2; exit 2 ;;
esac
[ -f "$recipe" ] || { echo "run_sft.sh: no such recipe: $recipe" >&2; exit 2; }

resume_flag=()
if [ "${R1SFT_NO_RESUME:-0}" = "1" ]; then
  resume_flag=(--no-resume)
fi
exec "${r1sft[@]}" train "${resume_flag[@]}" "$recipe" "$@"
