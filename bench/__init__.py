"""Benchmarks for flask-prodserve (not part of the distributed package)."""
