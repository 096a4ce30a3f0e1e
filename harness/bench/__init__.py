"""The benchmark suite (`python -m harness bench`); see harness/bench/suite.py."""
