"""Benchmark report: adaptive_moe against the plain alternatives on the embedded SmolLM2-135M-Instruct.

Answer quality per domain (base alone, each expert always on, PEFT cat merge, PEFT Arrow, the routed
system with select and mixture, oracle routing), RouteLLM's APGR and the share routed for 50% / 80% of
the gain, paired flips per domain; AUROC / PRR of the uncertainty estimators with risk-coverage curves;
the latency ratios of bench_moe.py / bench_pool.py (read, not re-run); peak RSS with 50 registered
experts against the base alone and against plain PEFT. The orchestration lives in
``benchmarks/report/`` (its docstring says what each arm does); ``adaptive-moe bench`` runs the same.

    python benchmarks/bench_report.py                 # the full report (about 1.5 h on 2 CPU cores)
    python benchmarks/bench_report.py --entities 4 --general 60 --skip-memory   # a quicker look
    python benchmarks/bench_report.py --tiny --skip-memory --out /tmp/tiny        # the plumbing, in seconds

Writes ``report.md``, ``report.json`` and ``report_*.png`` under ``--out`` (default: benchmarks/results).
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as `python benchmarks/bench_report.py`: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from benchmarks.report import main

if __name__ == "__main__":
    sys.exit(main())
