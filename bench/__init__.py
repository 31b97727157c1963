"""Benchmarks: each prints its figures with units; ratios are measured in one run against a baseline."""
