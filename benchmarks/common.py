"""What every benchmark script shares: the machine it ran on, timing, progress lines, the base model
(embedded or a tiny random one), and JSON + Markdown + plot output."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]


def loadavg() -> list[float] | None:
    """The 1/5/15-minute load averages (None where the platform has none)."""
    try:
        return [float(x) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info(threads: int | None = None, **extra: Any) -> dict[str, Any]:
    """Where and with what a benchmark ran: date, Python, platform, CPUs, thread count, package versions
    and the load average at the start (this machine is shared: a high load explains a noisy run)."""
    import numpy
    import peft
    import torch
    import transformers

    from adaptive_moe import __version__

    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(), "threads": threads,
        "torch_threads": torch.get_num_threads(), "adaptive_moe": __version__, "torch": torch.__version__,
        "transformers": transformers.__version__, "peft": peft.__version__, "numpy": numpy.__version__,
        "cuda": torch.cuda.is_available(), "loadavg_start": loadavg(), **extra,
    }  # fmt: skip


def say(message: str, tag: str = "bench") -> None:
    """A progress line on stderr with the time."""
    print(f"[{tag} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sync() -> None:
    """Wait for queued GPU work (a no-op on the CPU), so a timer measures what it ran."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds one call of ``fn`` takes (GPU work included) and its result."""
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t, out


def load_base(tiny: bool, work: Path, device: str | None = None):
    """The embedded SmolLM2 (``tiny=False``) or a tiny random llama with a chat template made in ``work``
    (checks a benchmark's plumbing in seconds). Returns the base and the tiny model's folder (or None)."""
    from adaptive_moe import load_base_model

    if tiny:
        from adaptive_moe.testing import make_tiny_model

        folder = work / "tiny-model"
        if not folder.is_dir():
            make_tiny_model(folder, "llama", chat_template=True)
        return load_base_model(name_or_path=str(folder), device=device or "cpu"), str(folder)
    return (load_base_model(device=device) if device else load_base_model()), None


def write_json_and_markdown(out: Path, name: str, result: dict, lines: list[str]) -> None:
    """Write ``{name}.json`` (the raw result) and ``{name}.md`` (the report lines) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def command_line(script: str, argv: list[str] | None) -> str:
    """The command that reproduces a run: ``python benchmarks/<script> <flags>``."""
    flags = argv if argv is not None else sys.argv[1:]
    return " ".join(["python", f"benchmarks/{Path(script).name}", *flags])


def add_run_arguments(parser: Any, threads: int = 2) -> Any:
    """The flags every benchmark takes: ``--threads`` (torch CPU threads) and ``--out`` (results folder)."""
    parser.add_argument("--threads", type=int, default=threads, help=f"torch CPU threads ({threads})")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (benchmarks/results)")
    return parser
