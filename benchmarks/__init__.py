"""Throughput benchmarks: pt-mlm and tf-mlm against the plain reference recipes (see benchmarks/run.py)."""
