"""Router evaluation: one report with the field's metrics on a labelled test set the router never saw.

- per estimator: AUROC and PRR for predicting base errors (with bootstrap intervals), on the whole mix
  and on the general questions alone (the hard case: the base's own right and wrong answers), and the
  ECE of its confidence (the estimator's own map to [0, 1]; the router's calibrated one for the router);
- ECE of the router's confidence before and after calibration; the risk-coverage curve;
- expert matching: share of domain questions matched to their expert, share of general questions (and
  of questions from domains no expert covers) matched to any expert;
- routes taken at the router's threshold; with the onward route's quality per query, the cost/quality
  curve, RouteLLM's APGR and the share routed to reach 50% / 80% of the gain.

Written as JSON + Markdown (+ PNG when matplotlib is installed) by :meth:`RouterReport.write`;
:func:`evaluate_saved_router` is the ``adaptive-moe evaluate-router`` job (JSONL in, files out).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import AdaptiveMoEConfig
from ..errors import InvalidInputError
from ..evaluation import metrics
from ..uncertainty import get_estimator, list_estimators
from ..utils.io import atomic_write_text
from .base import Query
from .training import GENERAL, label_base_answers, read_labelled_questions, signals_from_row, with_prompt_states

DEFAULT_ESTIMATORS = ("max_sequence_prob", "mean_logprob", "mean_entropy", "min_token_prob", "perplexity")


@dataclass
class RouterReport:
    """Everything :func:`evaluate_router` measured (see the module docstring)."""

    n: int
    n_general: int
    base_accuracy: float
    base_accuracy_general: float
    estimators: dict[str, dict[str, Any]] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    risk_coverage: dict[str, Any] = field(default_factory=dict)
    matching: dict[str, Any] = field(default_factory=dict)
    routes: dict[str, Any] = field(default_factory=dict)
    cost_quality: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)

    def to_markdown(self) -> str:
        """The report as Markdown."""
        lines = [
            "# Router evaluation",
            "",
            f"{self.n} test questions ({self.n_general} general); base accuracy {self.base_accuracy:.3f} "
            f"(general {self.base_accuracy_general:.3f}).",
            "",
            "## Predicting base errors",
            "",
            "| estimator | AUROC (all) | 95% CI | AUROC (general) | 95% CI | PRR (all) | PRR (general) | ECE |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, m in self.estimators.items():
            lines.append(
                f"| {name} | {_f(m.get('auroc'))} | {_ci(m.get('auroc_ci'))} | {_f(m.get('auroc_general'))} | "
                f"{_ci(m.get('auroc_general_ci'))} | {_f(m.get('prr'))} | {_f(m.get('prr_general'))} | "
                f"{_f(m.get('ece'))} |"
            )
        c = self.calibration
        lines += ["", "## Calibration", "",
                  f"ECE of the router's confidence: {_f(c.get('ece_before'))} uncalibrated, "
                  f"{_f(c.get('ece_after'))} calibrated; AURC {_f(self.risk_coverage.get('aurc'))}."]  # fmt: skip
        if self.matching:
            m = self.matching
            lines += [
                "",
                "## Expert matching",
                "",
                f"Domain questions matched to their expert: {_f(m.get('domain_to_own_expert'))} "
                f"({m.get('n_domain', 0)}); general questions matched to any expert: "
                f"{_f(m.get('general_to_any_expert'))} ({m.get('n_general', 0)}); questions of domains no "
                f"expert covers matched: {_f(m.get('uncovered_to_any_expert'))} ({m.get('n_uncovered', 0)}).",
            ]
        if self.routes:
            lines += ["", "## Routes at the threshold", "", ", ".join(f"{k}: {v}" for k, v in self.routes.items())]
        if self.cost_quality:
            q = self.cost_quality
            lines += ["", "## Cost and quality", "",
                      f"APGR {_f(q.get('apgr'))}; share routed for 50% of the gain {_f(q.get('share_for_50'))}, "
                      f"for 80% {_f(q.get('share_for_80'))}."]  # fmt: skip
        return "\n".join(lines) + "\n"

    def summary(self) -> str:
        """The headline numbers as a small text table: AUROC, PRR and ECE per estimator, then matching."""
        head = f"{'estimator':<28} {'AUROC':>7} {'AUROC gen':>9} {'PRR':>7} {'ECE':>7}"
        lines = [f"{self.n} questions ({self.n_general} general); base accuracy {self.base_accuracy:.3f}", head,
                 "-" * len(head)]  # fmt: skip
        for name, m in self.estimators.items():
            lines.append(f"{name:<28} {_f(m.get('auroc')):>7} {_f(m.get('auroc_general')):>9} "
                         f"{_f(m.get('prr')):>7} {_f(m.get('ece')):>7}")  # fmt: skip
        c = self.calibration
        lines.append(f"router confidence ECE: {_f(c.get('ece_before'))} uncalibrated, {_f(c.get('ece_after'))} "
                     f"calibrated; routes: {', '.join(f'{k} {v}' for k, v in self.routes.items())}")  # fmt: skip
        if self.matching:
            m = self.matching
            lines.append(f"matching: {_f(m.get('domain_to_own_expert'))} of domain questions to their expert, "
                         f"{_f(m.get('general_to_any_expert'))} of general ones to any")  # fmt: skip
        return "\n".join(lines)

    def write(self, folder: str | Path, name: str = "router_eval") -> list[Path]:
        """Write ``{name}.json``, ``{name}.md`` and (with matplotlib) ``{name}.png`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / f"{name}.json", folder / f"{name}.md"]
        atomic_write_text(paths[0], json.dumps(self.to_dict(), indent=2, default=float))
        atomic_write_text(paths[1], self.to_markdown())
        png = self._plot(folder / f"{name}.png")
        return paths + ([png] if png else [])

    def _plot(self, path: Path) -> Path | None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        rc = self.risk_coverage
        if rc:
            axes[0].plot(rc["coverage"], rc["risk"])
            axes[0].set(xlabel="coverage (share answered by the base)", ylabel="error among answered",
                        title="Risk-coverage")  # fmt: skip
        cq = self.cost_quality
        if cq:
            axes[1].plot(cq["shares"], cq["quality"])
            axes[1].set(xlabel="share routed onward", ylabel="quality", title=f"Cost/quality (APGR {cq['apgr']:.2f})")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def _f(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _ci(ci: Any) -> str:
    return "n/a" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _safe(fn, *args) -> float | None:
    try:
        return float(fn(*args))
    except InvalidInputError:
        return None


def _safe_ci(fn, *arrays, n: int) -> list[float] | None:
    try:
        return list(metrics.bootstrap_ci(fn, *arrays, n=n))
    except InvalidInputError:
        return None


def evaluate_router(
    router,
    labelled,
    *,
    estimators: Sequence[str] | None = None,
    strong_quality: Sequence[float] | None = None,
    bootstrap: int = 1000,
    base: Any = None,
    generation: Any = None,
) -> RouterReport:
    """Evaluate ``router`` (an :class:`~adaptive_moe.routing.UncertaintyRouter`) on ``labelled``, a Dataset
    from :func:`~adaptive_moe.routing.label_base_answers` that the router was not trained on.

    ``estimators``: built-in estimator names compared beside the router's own (default: all stateless
    ones). ``strong_quality``: per question, the quality of the onward route (1/0: the expert's answer
    right or wrong) for the cost/quality curve; without it that section is left out. ``base``: needed
    for a ``pre`` router with ``pre_layers`` (its prompt states are recomputed at that depth; the rows
    hold the last layer's), with ``generation``'s prompt settings.
    """
    if len(labelled) == 0:
        raise InvalidInputError("no labelled questions to evaluate on")
    signals = [signals_from_row(r) for r in labelled]
    layers = router.config.decision_layers
    if layers is not None:
        if base is None:
            raise InvalidInputError(f"this router decides on decoder layer {layers} (router.pre_layers); pass base= "
                                    "so its prompt states can be computed at that depth")  # fmt: skip
        signals = with_prompt_states(base, signals, generation, layers)
    y = np.asarray(labelled["correct"], dtype=bool)
    domains = list(labelled["domain"])
    general = np.array([d == GENERAL for d in domains])
    report = RouterReport(len(y), int(general.sum()), float(y.mean()),
                          float(y[general].mean()) if general.any() else float("nan"))  # fmt: skip

    names = list(estimators) if estimators is not None else [n for n in DEFAULT_ESTIMATORS if n in list_estimators()]
    scored = {n: get_estimator(n) for n in names}
    router_label = f"router:{router.estimator.name}"
    scored[router_label] = router.estimator
    any_general = bool(general.any())
    for label, est in scored.items():
        raw = est.score_batch(signals)
        conf = router.confidence(raw) if label == router_label else np.clip(est.to_confidence(raw), 0, 1)
        report.estimators[label] = {
            "auroc": _safe(metrics.auroc, raw, y),
            "auroc_ci": _safe_ci(metrics.auroc, raw, y, n=bootstrap),
            "auroc_general": _safe(metrics.auroc, raw[general], y[general]) if any_general else None,
            "auroc_general_ci": _safe_ci(metrics.auroc, raw[general], y[general], n=bootstrap) if any_general else None,
            "prr": _safe(metrics.prr, raw, y),
            "prr_general": _safe(metrics.prr, raw[general], y[general]) if any_general else None,
            "ece": _safe(metrics.ece, conf, y),
        }

    raw = router.estimator.score_batch(signals)
    before = np.clip(router.estimator.to_confidence(raw), 0, 1)
    after = router.confidence(raw)
    report.calibration = {"ece_before": _safe(metrics.ece, before, y), "ece_after": _safe(metrics.ece, after, y),
                          "calibrated": router.calibrator is not None}  # fmt: skip
    coverage, risk = metrics.risk_coverage_curve(after, y)
    report.risk_coverage = {"coverage": coverage.tolist(), "risk": risk.tolist(), "aurc": _safe(metrics.aurc, after, y)}

    queries = [Query(s.prompt, signals=s) for s in signals]
    decisions = router.route_batch(queries, match_all=True)  # matching judged on every question
    routes = [d.route for d in decisions]
    report.routes = {r: routes.count(r) for r in ("base", "expert", "gap", "abstain") if routes.count(r)}
    report.routes["threshold"] = router.config.threshold
    if router.experts:
        report.matching = _matching(decisions, queries, router, domains)
    if strong_quality is not None:
        strong = np.asarray(strong_quality, dtype=np.float64)
        if strong.shape != y.shape:
            raise InvalidInputError(f"strong_quality has {strong.size} values for {y.size} questions")
        shares, quality = metrics.routing_curve(1 - after, y.astype(float), strong)
        report.cost_quality = {
            "apgr": _safe(metrics.apgr, 1 - after, y.astype(float), strong),
            "share_for_50": _safe(metrics.share_for_gain, 1 - after, y.astype(float), strong, 0.5),
            "share_for_80": _safe(metrics.share_for_gain, 1 - after, y.astype(float), strong, 0.8),
            "shares": shares.tolist(), "quality": quality.tolist(),
        }  # fmt: skip
    return report


def _matching(decisions, queries, router, domains) -> dict[str, Any]:
    """Matching judged on every question, whatever the base confidence (matching is its own stage)."""
    floor = router.config.min_match_score
    own, general_hits, uncovered_hits = [], [], []
    for d, dom in zip(decisions, domains, strict=True):
        matched = {n for n, v in d.expert_scores.items() if v >= floor}
        best = d.best_expert
        if dom == GENERAL:
            general_hits.append(bool(matched))
        elif dom in router.experts:
            own.append(best is not None and best[0] == dom and best[1] >= floor)
        else:
            uncovered_hits.append(bool(matched))
    mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
    return {"domain_to_own_expert": mean(own), "n_domain": len(own), "general_to_any_expert": mean(general_hits),
            "n_general": len(general_hits), "uncovered_to_any_expert": mean(uncovered_hits),
            "n_uncovered": len(uncovered_hits), "min_match_score": floor}  # fmt: skip


def evaluate_saved_router(
    config: AdaptiveMoEConfig | None,
    data: Any,
    router_dir: str | Path,
    *,
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    bootstrap: int = 1000,
    progress: bool = True,
) -> tuple[RouterReport, list[Path]]:
    """The ``adaptive-moe evaluate-router`` job: load the router saved in ``router_dir`` and the
    configured base, label the base's answers to ``data`` (a JSONL file as
    :func:`~adaptive_moe.routing.training.read_labelled_questions` reads, or anything
    :func:`~adaptive_moe.routing.label_base_answers` takes), evaluate, and write the report into ``out``
    (default ``<workspace>/results``). Returns the report and the files written."""
    from ..model import load_base_model
    from .router import UncertaintyRouter

    config = config or AdaptiveMoEConfig()
    router = UncertaintyRouter.load(router_dir)
    rows = read_labelled_questions(data) if isinstance(data, (str, Path)) else data
    base = load_base_model(config.model)
    labelled = label_base_answers(base, rows, generation=config.generation, cache_dir=cache_dir, progress=progress)
    report = evaluate_router(router, labelled, bootstrap=bootstrap, base=base, generation=config.generation)
    return report, report.write(out if out is not None else config.workspace_path("results"))
