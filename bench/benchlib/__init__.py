"""Helpers for `make bench` (bench/bench_train.py): shapes, synthetic data, the two arms, measurement, report."""
