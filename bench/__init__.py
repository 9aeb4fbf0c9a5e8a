"""Benchmark harness: the service under load from wrk, compared with pgbench on the same SQL.

`python -m bench --help` (or `make bench`, `make bench-smoke`); see bench/README.md.
"""
