"""Start-up patches: faster (or, where LLaMA-Factory's own fails, working) versions of functions LLaMA-Factory's
stack runs, installed in the processes ``r1sft train`` launches (``registry.PATCHES``). The planner's memory model
imports them too."""
