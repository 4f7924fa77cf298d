"""``r1sft train``: launch ``llamafactory-cli train`` on 1 GPU, N GPUs or N nodes, with the start-up patches."""
