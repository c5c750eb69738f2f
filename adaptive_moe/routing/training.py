"""Router training: run the base model on labelled questions, label its answers with the shared
scorer, then fit the estimator (the probe), the calibrator, the threshold and the expert matcher.

The labelled base answers are a ``datasets.Dataset`` (question, gold answers, domain, the base's
answer, whether it is correct, and the signals the estimators read), saved under a cache folder keyed
by the base fingerprint, the generation settings and the questions, so retraining never regenerates.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import AdaptiveMoEConfig, GenerationConfig, RouterConfig
from ..errors import InvalidInputError, ModelNotFoundError
from ..evaluation.scoring import get_scorer
from ..model.generation import GenerationSignals
from ..utils.io import atomic_directory
from .base import Query
from .router import UncertaintyRouter

logger = logging.getLogger(__name__)

_SIGNAL_COLUMNS = ("token_logprobs", "token_entropies", "prompt_hidden", "prompt_hidden_mean", "query_hidden")
GENERAL = ""  # the domain of questions no expert should take (the base's own knowledge)


def _rows(data: Any) -> list[dict[str, Any]]:
    """(question, answers[, domain]) tuples, QA objects, dicts, or a Dataset -> normalised rows."""
    if hasattr(data, "column_names") and hasattr(data, "to_list"):
        data = data.to_list()
    rows = []
    for i, item in enumerate(data or []):
        if isinstance(item, Mapping):
            q, a, d = item.get("question"), item.get("answers"), item.get("domain")
        elif hasattr(item, "question") and hasattr(item, "answers"):
            q, a, d = item.question, item.answers, getattr(item, "domain", None)
        elif isinstance(item, Sequence) and len(item) in (2, 3):
            q, a, d = item[0], item[1], item[2] if len(item) == 3 else None
        else:
            raise InvalidInputError(f"item {i}: expected (question, answers[, domain]), a dict or a QA object")
        a = [a] if isinstance(a, str) else list(a or [])
        if not isinstance(q, str) or not q.strip() or not a:
            raise InvalidInputError(f"item {i}: needs a non-empty question and at least one gold answer")
        row = {"question": q, "answers": [str(x) for x in a], "domain": d or GENERAL}
        family = item.get("family") if isinstance(item, Mapping) else None
        if family is not None:  # the question family, for the leave-one-family-out table
            if not isinstance(family, str) or not family.strip():
                raise InvalidInputError(f"item {i}: 'family' must be a non-empty string, got {family!r}")
            row["family"] = family.strip()
        rows.append(row)
    if not rows:
        raise InvalidInputError("no labelled questions given")
    return rows


def read_labelled_questions(path: str | Path) -> list[dict[str, Any]]:
    """Labelled questions from a JSONL file: one object a line with ``question``, ``answers`` (a list of
    gold answers or one string) and optionally ``domain`` (the expert that should take it; empty or
    missing: general knowledge) and ``family`` (the kind of question, for the leave-one-family-out
    table). Blank lines are skipped; a bad line raises :class:`InvalidInputError`
    naming its number, a missing file :class:`ModelNotFoundError`."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"labelled questions file {str(path)!r} does not exist")
    rows = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                raise InvalidInputError(f"{path}: line {number} is not valid JSON ({e.msg})") from None
            if not isinstance(item, dict):
                raise InvalidInputError(f"{path}: line {number} must be a JSON object with question and answers")
            try:
                rows.append(_rows([item])[0])
            except InvalidInputError:
                raise InvalidInputError(
                    f"{path}: line {number} needs a non-empty 'question', at least one gold in 'answers' and, "
                    "if given, a non-empty string 'family'"
                ) from None
    if not rows:
        raise InvalidInputError(f"{path}: no labelled questions in the file")
    return rows


def _cache_key(base, rows: list[dict[str, Any]], generation: GenerationConfig, scorer: str) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([base.fingerprint, generation.to_dict(), scorer, rows], sort_keys=True).encode())
    return h.hexdigest()[:20]


def label_base_answers(
    base,
    data: Any,
    *,
    generation: GenerationConfig | None = None,
    scorer: str = "contains",
    cache_dir: str | Path | None = None,
    progress: bool = True,
):
    """The base model's answers to labelled questions, scored: a ``datasets.Dataset`` with columns
    ``question, answers, domain, answer, correct`` and the signals (log-probs, entropies, hidden states).

    ``data``: ``(question, answers[, domain])`` tuples, dicts or QA objects, or a Dataset with those
    columns. ``domain`` names the expert that should take the question (empty: general knowledge).
    With ``cache_dir`` the result is saved there and reused for the same base, settings and questions.
    """
    from datasets import Dataset, load_from_disk
    from tqdm.auto import tqdm

    rows = _rows(data)
    generation = generation or GenerationConfig(max_new_tokens=24)
    judge = get_scorer(scorer)
    cached = None
    if cache_dir is not None:
        cached = Path(cache_dir) / f"labels-{_cache_key(base, rows, generation, scorer)}"
        if cached.is_dir():
            logger.info("base answers for %d questions read from %s", len(rows), cached)
            return load_from_disk(str(cached))
    out = []
    step = generation.batch_size
    for start in tqdm(range(0, len(rows), step), desc="base answers", unit="batch", disable=not progress):
        chunk = rows[start : start + step]
        for row, s in zip(chunk, base.generate_with_signals([r["question"] for r in chunk], generation), strict=True):
            out.append({**row, "answer": s.text, "correct": bool(judge.score(s.text, row["answers"])),
                        "finish_reason": s.finish_reason, "prompt_tokens": s.prompt_tokens,
                        **{c: getattr(s, c).tolist() for c in _SIGNAL_COLUMNS}})  # fmt: skip
    dataset = Dataset.from_list(out)
    if cached is not None:
        with atomic_directory(cached, replace=True) as tmp:
            dataset.save_to_disk(str(tmp))
        dataset = load_from_disk(str(cached))
    return dataset


def signals_from_row(row: Mapping[str, Any]) -> GenerationSignals:
    """Rebuild the :class:`GenerationSignals` an estimator reads from a labelled row."""
    t = {c: torch.tensor(row[c], dtype=torch.float32) for c in _SIGNAL_COLUMNS}
    return GenerationSignals(prompt=row["question"], text=row["answer"], token_ids=[0] * len(row["token_logprobs"]),
                             finish_reason=row["finish_reason"], prompt_tokens=row["prompt_tokens"], **t)  # fmt: skip


def with_prompt_states(base, signals: list[GenerationSignals], generation, layers: int) -> list[GenerationSignals]:
    """The signals with their prompt states taken from the first ``layers`` decoder layers, as a
    shallow ``pre`` decision sees them."""
    states = base.prompt_states([s.prompt for s in signals], generation, layers=layers)
    return [dataclasses.replace(s, prompt_hidden=p.prompt_hidden, prompt_hidden_mean=p.prompt_hidden_mean,
                                query_hidden=p.query_hidden) for s, p in zip(signals, states, strict=True)]  # fmt: skip


def split_dataset(dataset, validation_fraction: float = 0.25, seed: int = 0):
    """Train / validation split, stratified by domain and correctness."""
    if not 0 < validation_fraction < 1:
        raise InvalidInputError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    rng = np.random.default_rng(seed)
    strata: dict[tuple[str, bool], list[int]] = {}
    for i, (d, c) in enumerate(zip(dataset["domain"], dataset["correct"], strict=True)):
        strata.setdefault((d, c), []).append(i)
    val = []
    for idx in strata.values():
        idx = list(rng.permutation(idx))
        val.extend(int(i) for i in idx[: round(len(idx) * validation_fraction)])
    val_set = set(val)
    train = [i for i in range(len(dataset)) if i not in val_set]
    return dataset.select(train), dataset.select(sorted(val))


@dataclass
class RouterTrainingReport:
    """What :func:`train_router` did: sizes, base accuracy, the probe's chosen strength, the threshold."""

    n_train: int
    n_validation: int
    base_accuracy: float
    estimator: str
    probe_C: float | None = None
    validation_auroc: float | None = None
    threshold: float | None = None
    threshold_detail: dict[str, Any] = field(default_factory=dict)
    experts: dict[str, int] = field(default_factory=dict)
    min_match_score: float | None = None
    families: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)

    def summary(self) -> str:
        """A few lines for people: sizes, accuracy, validation AUROC, threshold, experts."""
        auroc = "n/a" if self.validation_auroc is None else f"{self.validation_auroc:.3f}"
        probe = "" if self.probe_C is None else f" (C={self.probe_C:g})"
        d = self.threshold_detail
        how = ""
        if "alpha" in d:
            verdict = "feasible" if d["feasible"] else "infeasible, every query goes onward"
            how = (
                f" (target error {d['alpha']:.2f} with probability {1 - d['delta']:.2f}: {verdict}, coverage "
                f"{d['coverage']:.2f}, error bound {d['error_bound']:.3f} on {d['n_calibration']} questions)"
            )
        elif "share" in d:
            how = f" (sends {d['share_on_validation']:.0%} of validation onward; asked {d['share']:.0%})"
        lines = [
            f"questions: {self.n_train} train, {self.n_validation} validation; base accuracy {self.base_accuracy:.3f}",
            f"estimator: {self.estimator}{probe}; validation AUROC {auroc}",
            f"threshold: {self.threshold:.3f}{how}",
        ]
        if self.experts:
            counts = ", ".join(f"{n} ({k} questions)" for n, k in sorted(self.experts.items()))
            lines.append(f"experts: {counts}; min_match_score {self.min_match_score:.3f}")
        if self.families:
            from .families import family_table

            f = self.families
            general = ", ".join(f["general_families"]) or "none"
            lines += ["", f"leave-one-family-out (each family scored by estimators fitted without it; general "
                      f"knowledge: {general}):", *family_table(f["results"], f["costs"]),
                      f"shipping rule (best general-knowledge AUROC under 1.1x a generation, never below the best "
                      f"logit statistic on a family): {f['choice']['chosen']}"]  # fmt: skip
        return "\n".join(lines)


def train_router(
    base,
    data: Any,
    *,
    config: RouterConfig | None = None,
    expert_questions: Mapping[str, Sequence[str]] | None = None,
    validation_fraction: float = 0.25,
    seed: int = 0,
    generation: GenerationConfig | None = None,
    scorer: str = "contains",
    cache_dir: str | Path | None = None,
    progress: bool = True,
    share: float | None = None,
) -> tuple[UncertaintyRouter, RouterTrainingReport]:
    """Fit an :class:`UncertaintyRouter` on labelled questions.

    Steps: label the base's answers (cached); split train / validation (stratified); fit a trainable
    estimator on train, choosing its regularisation on validation AUROC (the probe's early stopping);
    fit the calibrator on validation scores (held out from the estimator); with ``config.target_error``,
    calibrate on one half of validation and choose the threshold on the other, so its finite-sample
    guarantee holds; or, with ``share``, take the threshold that sends that share of the validation
    questions onward (RouteLLM's quantile); tune ``min_match_score`` on held-out expert questions and
    embed each expert's questions for the matcher, with the general questions as the background.
    """
    from ..evaluation.metrics import auroc
    from ..uncertainty.calibration import make_calibrator, threshold_for_error_rate, threshold_for_share

    config = config or RouterConfig()
    if share is not None and config.target_error is not None:
        raise InvalidInputError("give either config.target_error or share, not both: each sets the threshold")
    if share is not None and not (isinstance(share, (int, float)) and 0 <= share <= 1):
        raise InvalidInputError(f"share must be in [0, 1] (the share of queries sent onward), got {share!r}")
    labelled = data if hasattr(data, "column_names") and "correct" in data.column_names else label_base_answers(
        base, data, generation=generation, scorer=scorer, cache_dir=cache_dir, progress=progress)  # fmt: skip
    train, val = split_dataset(labelled, validation_fraction, seed)
    train_sig = [signals_from_row(r) for r in train]
    val_sig = [signals_from_row(r) for r in val]
    if config.decision_layers is not None:  # the decision will read a shallower layer
        train_sig, val_sig = (with_prompt_states(base, s, generation, config.decision_layers)
                              for s in (train_sig, val_sig))  # fmt: skip
    y_train, y_val = np.array(train["correct"], bool), np.array(val["correct"], bool)
    router = UncertaintyRouter(config)
    est = router.estimator
    report = RouterTrainingReport(len(train), len(val), float(np.mean(labelled["correct"])), est.name)
    if est.trainable:
        # choose the regularisation on validation: AUROC on the whole mix and, when they have both right
        # and wrong answers, on general questions alone (the base's own knowledge: the hard case)
        general = np.array([d == GENERAL for d in val["domain"]])
        use_general = general.any() and 0 < y_val[general].sum() < general.sum()
        best = None
        for c in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3):
            est.C = c
            est.fit(train_sig, y_train)
            raw = est.score_batch(val_sig)
            score = auroc(raw, y_val)
            if use_general:
                score = (score + auroc(raw[general], y_val[general])) / 2
            if best is None or score > best[0]:
                best = (score, c, est.state_dict())
        est.load_state_dict(best[2])
        report.probe_C, report.validation_auroc = best[1], float(best[0])
    raw_val = est.score_batch(val_sig)
    if report.validation_auroc is None:
        report.validation_auroc = float(auroc(raw_val, y_val))
    # the error-rate guarantee needs a threshold chosen on data the calibrator did not see: halve validation
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(len(y_val))
    cal, thr = (
        (order[: len(order) // 2], order[len(order) // 2 :]) if config.target_error is not None else (order, order)
    )
    if config.calibration != "none":
        router.calibrator = make_calibrator(config.calibration).fit(raw_val[cal], y_val[cal])
    if config.target_error is not None:
        result = threshold_for_error_rate(router.confidence(raw_val[thr]), y_val[thr], config.target_error,
                                          config.delta)  # fmt: skip
        if not result.feasible:
            logger.warning("no threshold keeps the base's error <= %.2f with probability %.2f on %d questions; "
                           "the threshold is 1.0: every query goes onward",
                           config.target_error, 1 - config.delta, len(thr))  # fmt: skip
        router.config = config.replace(threshold=float(min(result.tau, 1.0)))
        report.threshold_detail = result.to_dict()
    elif share is not None:
        conf_val = router.confidence(raw_val)
        tau = min(threshold_for_share(conf_val, share), 1.0)
        router.config = config.replace(threshold=float(tau))
        report.threshold_detail = {"share": float(share), "share_on_validation": float(np.mean(conf_val < tau))}
    report.threshold = router.config.threshold
    if expert_questions:
        background = [q for q, d in zip(labelled["question"], labelled["domain"], strict=True) if d == GENERAL]
        floor = tune_match_floor(router, base, expert_questions, background, seed=seed)
        if floor is not None:
            router.config = router.config.replace(min_match_score=floor)
        fit_matcher(router, base, expert_questions, background=background)
        report.experts = {n: len(q) for n, q in expert_questions.items()}
        report.min_match_score = router.config.min_match_score
    return router, report


def tune_match_floor(
    router: UncertaintyRouter,
    base,
    expert_questions: Mapping[str, Sequence[str]],
    background: Sequence[str],
    *,
    holdout: float = 0.25,
    seed: int = 0,
) -> float | None:
    """Choose ``min_match_score`` on held-out questions: fit the matcher on 75% of each expert's
    questions and half the background, then take the floor that best separates the held-out expert
    questions (matched to their own expert) from the other half of the background (matched to none).
    Returns ``None`` when there are too few questions to tell."""
    rng = np.random.default_rng(seed)
    bg = list(rng.permutation(list(background)))
    if len(bg) < 8 or any(len(q) < 4 for q in expert_questions.values()):
        return None
    fit_bg, test_bg = bg[: len(bg) // 2], bg[len(bg) // 2 :]
    probe = UncertaintyRouter(router.config, estimator=router.estimator, matcher=type(router.matcher)(
        **router.matcher.settings()), embedder=router._embedder)  # fmt: skip
    held: list[tuple[str, str]] = []
    fit: dict[str, list[str]] = {}
    for name, questions in expert_questions.items():
        qs = list(rng.permutation(list(questions)))
        cut = max(1, int(len(qs) * holdout))
        held += [(name, q) for q in qs[:cut]]
        fit[name] = qs[cut:]
    fit_matcher(probe, base, fit, background=fit_bg)

    def scores(texts: list[str]) -> list[dict[str, float]]:
        return probe.match_scores([Query(t) for t in texts], embed_questions(probe, base, texts))

    own = scores([q for _, q in held])
    positives = np.array([s[name] if max(s, key=s.get) == name else 0.0 for (name, _), s in zip(held, own,
                          strict=True)])  # fmt: skip
    negatives = np.array([max(s.values()) for s in scores(test_bg)])
    candidates = np.unique(np.concatenate([positives, negatives, [0.0, 1.0]]))
    best = max(candidates, key=lambda t: (positives >= t).mean() - (negatives >= t).mean() - 1e-3 * abs(t - 0.5))
    # halfway down to the next lower score: the same split of the tuning scores, with room on both sides
    below = candidates[candidates < best]
    floor = float((best + below[-1]) / 2) if below.size else float(best)
    logger.info("match floor %.3f: %.0f%% of held-out expert questions matched, %.0f%% of background",
                floor, 100 * (positives >= floor).mean(), 100 * (negatives >= floor).mean())  # fmt: skip
    return min(max(floor, 0.0), 1.0)


def embed_questions(router: UncertaintyRouter, base, questions: Sequence[str]) -> np.ndarray:
    """Embeddings of questions as the router embeds live queries."""
    if router.config.embedder == "base":
        states = base.prompt_states(list(questions), layers=router.config.decision_layers)
        return router.embed([Query(q, states=s) for q, s in zip(questions, states, strict=True)])
    return router.embed([Query(q) for q in questions])


def fit_matcher(
    router: UncertaintyRouter, base, expert_questions: Mapping[str, Sequence[str]], background: Sequence[str] = ()
) -> None:
    """Fill the router's matcher: each expert's questions, and general questions as the background."""
    if background:
        router.matcher.set_background(embed_questions(router, base, background))
    for name, questions in expert_questions.items():
        if not questions:
            raise InvalidInputError(f"expert {name!r} has no example questions to match on")
        router.add_expert(name, embed_questions(router, base, questions))
        router.learn_terms(name, list(questions))


def calibrate_router(
    config: AdaptiveMoEConfig | None,
    data: Any,
    *,
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    share: float | None = None,
    progress: bool = True,
) -> tuple[UncertaintyRouter, RouterTrainingReport, Path]:
    """The ``adaptive-moe calibrate`` job: load the configured base, train a router on labelled
    questions with ``config.router`` and ``config.generation``, save it.

    ``data``: a JSONL file (:func:`read_labelled_questions`) or anything :func:`train_router` takes. The
    questions of each domain become that expert's examples for the matcher, the general ones (no
    domain) its background. ``out`` defaults to ``<workspace>/router``; ``share`` as in
    :func:`train_router`. Returns the router, the training report and the folder it was saved in.
    """
    from ..model import load_base_model

    config = config or AdaptiveMoEConfig()
    rows = read_labelled_questions(data) if isinstance(data, (str, Path)) else _rows(data)
    experts: dict[str, list[str]] = {}
    for r in rows:
        if r["domain"] != GENERAL:
            experts.setdefault(r["domain"], []).append(r["question"])
    tagged = {r["family"] for r in rows if "family" in r}
    if tagged and len(tagged) < 2:
        raise InvalidInputError(f"'family' names one family ({sorted(tagged)[0]!r}); leave-one-family-out needs two "
                                "or more, or leave the field out")  # fmt: skip
    if tagged and any("family" not in r for r in rows):
        raise InvalidInputError("some questions have a 'family' and some do not; give every question one")
    base = load_base_model(config.model)
    labelled = label_base_answers(base, rows, generation=config.generation, cache_dir=cache_dir, progress=progress)
    router, report = train_router(base, labelled, config=config.router, expert_questions=experts or None,
                                  generation=config.generation, cache_dir=cache_dir, progress=progress,
                                  share=share)  # fmt: skip
    if tagged:
        from .families import evaluate_families

        report.families = evaluate_families(base, labelled, config.generation)
    path = router.save(out if out is not None else config.workspace_path("router"))
    return router, report, path
