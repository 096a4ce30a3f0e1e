"""The benchmark suite, an application of the harness: ``python -m benchmarks`` (:mod:`benchmarks.cli`).

What it measures: :mod:`benchmarks.config`; the scheduling of its jobs: :mod:`benchmarks.suite` (each job in a
child process, :mod:`benchmarks.jobs`); the summaries and the report: :mod:`benchmarks.summaries`,
:mod:`benchmarks.report`."""
