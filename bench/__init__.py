"""Benchmarks: each path of the gateway against the fastest thing that could do the same work, in one run."""
