"""The benchmark suite, an application of the harness: ``python -m benchmarks`` (:mod:`benchmarks.cli`);
the scheduling is :mod:`benchmarks.suite`."""
