"""Start-up patches: faster versions of functions LLaMA-Factory's stack runs, installed in the processes
``r1sft train`` launches (``registry.PATCHES``). The planner's memory model imports them too."""
