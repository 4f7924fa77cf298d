"""``make demo`` and ``make learn``: the pipeline end to end, each step the command a user would type."""
