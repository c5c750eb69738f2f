"""The benchmark harness: one script per benchmark (``bench_*.py``), a shared core (:mod:`benchmarks.common`)
and the peer-comparison report (:mod:`benchmarks.report`, also behind ``adaptive-moe bench``).

Run a script from the checkout either way: ``python benchmarks/bench_pool.py`` or
``python -m benchmarks.bench_pool``. Results go to ``benchmarks/results/`` (JSON + Markdown + PNG).
"""
