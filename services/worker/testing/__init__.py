"""Builders for tests, benchmarks and local runs (the tiny random-weight models): never
imported by the worker's runtime modules, only by `make models`, tests, benchmarks and a
worker whose profile names a local build that is missing."""
