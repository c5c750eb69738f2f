"""Sections 2 and 3 of the report: the estimators' AUROC / PRR with risk-coverage curves, and the speed
ratios of bench_moe.py / bench_pool.py (read, not re-run)."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from ..common import RESULTS
from .quality import describe_router, facade

# ----------------------------------------------------------------------------------------------------------------
# 2. Uncertainty


def uncertainty_section(base, labelled, questions, routers, oracle, bootstrap: int, tiny: bool, work: Path) -> dict:
    import numpy as np

    from adaptive_moe.evaluation.metrics import risk_coverage_curve
    from adaptive_moe.routing import signals_from_row
    from adaptive_moe.routing.evaluation import DEFAULT_ESTIMATORS, evaluate_router
    from adaptive_moe.uncertainty import get_estimator, list_estimators

    router = routers.get("moe_select")
    if router is None:  # quality skipped: the router the facade gives this base, without experts
        router = facade(base, "select", work / "ws-uncertainty", tiny, 32).router
    info = describe_router(router, base)
    strong = [float(c) for c in oracle] if oracle is not None else None
    report = evaluate_router(router, labelled, strong_quality=strong, bootstrap=bootstrap)
    out: dict[str, Any] = {"router": info, "report": report.to_dict()}
    if info["shipped"]:  # the shipped router was fitted on the even-numbered general questions
        keep = [i for i, q in enumerate(questions) if q["domain"] != "general" or q["index"] % 2 == 1]
        held = labelled.select(keep)
        if sum(q["domain"] == "general" for q in (questions[i] for i in keep)):
            out["heldout_report"] = evaluate_router(router, held, bootstrap=min(bootstrap, 200)).to_dict()
    signals = [signals_from_row(r) for r in labelled]
    y = np.asarray(labelled["correct"], bool)
    curves = {}
    if 0 < y.sum() < len(y):
        for name in [n for n in DEFAULT_ESTIMATORS if n in list_estimators()]:
            cov, risk = risk_coverage_curve(get_estimator(name).score_batch(signals), y)
            curves[name] = {"coverage": cov.tolist(), "risk": risk.tolist()}
        raw = router.estimator.score_batch(signals)
        cov, risk = risk_coverage_curve(router.confidence(raw), y)
        curves[f"router:{router.estimator.name}"] = {"coverage": cov.tolist(), "risk": risk.tolist()}
    out["risk_coverage"] = curves
    return out


# ----------------------------------------------------------------------------------------------------------------
# 3. Speed (read, not run)


def speed_section(out: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in ("moe", "pool"):
        for folder in (out, RESULTS):
            path = None if folder is None else folder / f"{name}.json"
            if path is not None and path.is_file():
                try:
                    data = json.loads(path.read_text())
                except ValueError as e:
                    found[name] = {"path": str(path), "error": f"unreadable: {e}"}
                    break
                mtime = _dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.timezone.utc)
                found[name] = {"path": str(path), "date": mtime.isoformat(timespec="seconds"),
                               "command": data.get("command"), "machine": data.get("machine", {}),
                               "tables": _speed_tables(name, data)}  # fmt: skip
                break
    return found


def _speed_tables(name: str, data: dict) -> list[dict[str, Any]]:
    """Rows ``{what, value, goal, met}`` of the ratio tables of moe.json / pool.json."""
    rows: list[dict[str, Any]] = []
    if name == "moe":
        for c in data.get("comparisons", {}).values():
            if c.get("skipped"):
                rows.append({"what": c.get("label"), "value": None, "goal": c.get("goal"), "met": None})
            else:
                rows.append({"what": c.get("label") + (" (per step)" if c.get("per_step") else ""),
                             "value": c.get("ratio"), "goal": c.get("goal"), "met": c.get("met")})  # fmt: skip
        return rows
    hit = data.get("hit", {})
    if "ratio" in hit:
        rows.append({"what": "pool hit / one base forward pass", "value": hit["ratio"], "goal": None, "met": None})
    labels = {"hotswap": "(a) pool miss, hot-swap", "new_slot": "(b) pool miss, new slot",
              "first_slot": "(b0) pool miss, first slot", "file_read": "(c) reading the adapter file",
              "peft_naive": "(d) PEFT load_adapter + set_adapter + delete_adapter",
              "peft_wrap": "(d2) PEFT from_pretrained + unload"}  # fmt: skip
    for key, arm in data.get("miss", {}).get("arms", {}).items():
        goal = 5.0 if key == "hotswap" else None
        ratio = arm.get("ratio_to_file_read")
        rows.append({"what": f"{labels.get(key, key)} / file read", "value": ratio, "goal": goal,
                     "met": None if goal is None or ratio is None else ratio <= goal})  # fmt: skip
    for cap, c in data.get("zipf", {}).get("capacities", {}).items():
        rows.append({"what": f"Zipf hit rate, capacity {cap}", "value": c.get("hit_rate"), "goal": None, "met": None})
    return rows
