"""Confidence estimators evaluated across question families (leave-one-family-out).

A confidence estimator fitted on one kind of question can fail on another: a probe fitted to the shipped
check set separated the base's right and wrong answers on it and barely on general questions worded
otherwise. Here every estimator is fitted, and its calibrator too, on all families but one and scored on
the one held out; per held-out family the report gives AUROC (with a bootstrap interval) and PRR of the
raw score for the base's errors and ECE of the calibrated confidence. The headline is the mean AUROC
over the families with at least ``min_class`` right and wrong answers, so that a family the base gets
all wrong does not prop it up.

Estimators (names in :data:`FAMILY_ESTIMATORS`): the logit statistics (no fit); a logistic regression
over the five answer statistics; the hidden-state probe at two strengths; a probe on the query's states
after several decoder layers; P(True), the base asked whether its own answer is correct (Kadavath et al.
2022; one more prompt pass); and combinations. ``adaptive-moe calibrate --data F`` prints the same
table when the questions of ``F`` carry a ``family`` field.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..config import GenerationConfig
from ..errors import InvalidInputError
from ..evaluation.metrics import auroc, bootstrap_ci, ece, prr
from ..model.generation import encode_prompts
from ..uncertainty import get_estimator
from ..uncertainty.calibration import make_calibrator, threshold_for_error_rate
from ..uncertainty.probe import HiddenStateProbe, answer_statistics

STATISTICS = ("mean_logprob", "max_sequence_prob", "mean_entropy", "min_token_prob", "perplexity")
P_TRUE_PROMPT = "Question: {q}\nProposed answer: {a}\nIs the proposed answer correct? Answer Yes or No."


# -- extra passes ----------------------------------------------------------------------------------------
def layer_query_states(base, questions: Sequence[str], generation: GenerationConfig, layers: Sequence[int]):
    """The mean hidden state over the user's words after each of ``layers`` decoder blocks (one shallow
    prompt pass per layer): ``{layer: (n, hidden) array}``."""
    return {
        layer: np.stack([s.query_hidden.numpy() for s in base.prompt_states(list(questions), generation, layers=layer)])
        for layer in layers
    }


def _first_token_ids(tokenizer, words: Sequence[str]) -> list[int]:
    out = set()
    for w in words:
        ids = tokenizer(w, add_special_tokens=False)["input_ids"]
        if ids:
            out.add(ids[0])
    return sorted(out)


def p_true_scores(base, questions: Sequence[str], answers: Sequence[str], generation: GenerationConfig) -> np.ndarray:
    """P(True): the base is shown each question with its own answer and asked whether the answer is
    correct; the score is the log-odds of "Yes" against "No" as the next token (one prompt pass)."""
    if len(questions) != len(answers):
        raise InvalidInputError(f"p_true_scores: {len(questions)} questions but {len(answers)} answers")
    yes = _first_token_ids(base.tokenizer, ["Yes", " Yes", "yes", " yes"])
    no = _first_token_ids(base.tokenizer, ["No", " No", "no", " no"])
    prompts = [P_TRUE_PROMPT.format(q=q, a=a.strip()[:400] or "(no answer)") for q, a in zip(questions, answers,
                                                                                             strict=True)]  # fmt: skip
    out: list[float] = []
    for start in range(0, len(prompts), generation.batch_size):
        batch, _ = encode_prompts(base, prompts[start : start + generation.batch_size], generation)
        mask = batch["attention_mask"]
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
        with base.lock, torch.no_grad():
            logits = base.model(**batch, position_ids=positions).logits[:, -1, :].float()
        logp = torch.log_softmax(logits, dim=-1)
        out += (torch.logsumexp(logp[:, yes], -1) - torch.logsumexp(logp[:, no], -1)).tolist()
    return np.asarray(out, dtype=np.float64)


def _first_sentence(text: str) -> list[str]:
    from ..evaluation.scoring import normalize_answer

    head = text.strip().split("\n", 1)[0]
    for mark in (". ", "! ", "? "):
        head = head.split(mark, 1)[0]
    return normalize_answer(head).split()


def _token_f1(a: list[str], b: list[str]) -> float:
    if not a or not b:
        return float(a == b)
    common = sum(min(a.count(w), b.count(w)) for w in set(a))
    if common == 0:
        return 0.0
    precision, recall = common / len(b), common / len(a)
    return 2 * precision * recall / (precision + recall)


def sample_agreement(
    base,
    questions: Sequence[str],
    answers: Sequence[str],
    generation: GenerationConfig,
    *,
    k: int = 4,
    temperature: float = 0.7,
    max_new_tokens: int = 32,
    seed: int = 0,
) -> np.ndarray:
    """Sampling consistency (LM-Polygraph's lexical similarity): ``k`` answers sampled at ``temperature``
    per question, each compared with the greedy ``answers`` by token F1 of their first sentences
    (normalised); the score is the mean, in [0, 1]. It costs ``k`` more generations."""
    if len(questions) != len(answers):
        raise InvalidInputError(f"sample_agreement: {len(questions)} questions but {len(answers)} answers")
    if not isinstance(k, int) or k < 1:
        raise InvalidInputError(f"k must be a positive whole number of samples, got {k!r}")
    gen = generation.replace(do_sample=True, temperature=temperature, max_new_tokens=max_new_tokens)
    greedy = [_first_sentence(a) for a in answers]
    total = np.zeros(len(questions))
    for i in range(k):
        outs = base.generate_with_signals(list(questions), gen.replace(seed=seed + i))
        total += [_token_f1(g, _first_sentence(o.text)) for g, o in zip(greedy, outs, strict=True)]
    return total / k


# -- the data --------------------------------------------------------------------------------------------
@dataclass
class FamilyData:
    """Everything the estimators read, one row per labelled base answer.

    Attributes:
        signals: the base answers' :class:`~adaptive_moe.model.generation.GenerationSignals`.
        correct: whether each answer is right.
        family: each question's family name.
        layers: ``{layer: (n, hidden)}`` query states after shallower layers (``probe_layers``), or empty.
        p_true: P(True) log-odds per answer, or ``None`` (then the P(True) estimators are skipped).
        extra: more raw scores by name (e.g. a shipped router's), evaluated as they are, never fitted.
        agreement: :func:`sample_agreement` per answer, or ``None`` (then the sampling estimators are skipped).
    """

    signals: list[Any]
    correct: np.ndarray
    family: np.ndarray
    layers: dict[int, np.ndarray]
    p_true: np.ndarray | None = None
    extra: dict[str, np.ndarray] | None = None
    agreement: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.correct = np.asarray(self.correct, dtype=bool)
        self.family = np.asarray(self.family)
        n = len(self.signals)
        if self.correct.shape != (n,) or self.family.shape != (n,):
            raise InvalidInputError(f"FamilyData: {n} answers, {self.correct.size} labels, {self.family.size} families")
        self.stats = np.stack([answer_statistics(s) for s in self.signals]) if n else np.zeros((0, 5))

    @property
    def families(self) -> list[str]:
        """Family names in first-seen order."""
        return list(dict.fromkeys(self.family.tolist()))

    def hidden_layers(self) -> np.ndarray:
        """The query states of every layer side by side: ``(n, layers * hidden)``."""
        return np.concatenate([self.layers[k] for k in sorted(self.layers)], axis=1)


def _lr(x_fit: np.ndarray, y_fit: np.ndarray, x_eval: np.ndarray, C: float) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    mean, scale = x_fit.mean(0), x_fit.std(0)
    scale = np.where(scale > 1e-8, scale, 1.0)
    model = LogisticRegression(C=C, class_weight="balanced", max_iter=5000, random_state=0)
    model.fit((x_fit - mean) / scale, y_fit)
    return model.decision_function((x_eval - mean) / scale)


def _weighted(x: np.ndarray, weight: float) -> np.ndarray:
    """Standardised columns times ``weight``: a few informative numbers next to hundreds of hidden dimensions
    are not drowned by the L2 penalty."""
    scale = x.std(0)
    return (x - x.mean(0)) / np.where(scale > 1e-8, scale, 1.0) * weight


def _rows(d: FamilyData, mask: np.ndarray) -> list[Any]:
    return [d.signals[i] for i in np.flatnonzero(mask)]


def _statistic(name: str):
    return lambda d, fit, held: get_estimator(name).score_batch(_rows(d, held))


def _probe(C: float):
    def score(d: FamilyData, fit: np.ndarray, held: np.ndarray) -> np.ndarray:
        probe = HiddenStateProbe(C=C, answer_weight=3.0).fit(_rows(d, fit), d.correct[fit])
        return probe.score_batch(_rows(d, held))

    return score


def _probe_layers(with_p_true: bool):
    def score(d: FamilyData, fit: np.ndarray, held: np.ndarray) -> np.ndarray:
        extra = np.column_stack([d.stats, d.p_true]) if with_p_true else d.stats
        x = np.column_stack([d.hidden_layers(), _weighted(extra, 3.0 * np.sqrt(len(d.layers)))])
        return _lr(x[fit], d.correct[fit], x[held], C=0.001)

    return score


def _logit_lr(with_p_true: bool):
    def score(d: FamilyData, fit: np.ndarray, held: np.ndarray) -> np.ndarray:
        x = np.column_stack([d.stats, d.p_true]) if with_p_true else d.stats
        return _lr(x[fit], d.correct[fit], x[held], C=1.0)

    return score


def _fitted(score):
    """``score`` for an estimator that learns from the fit rows: no ranking at all (zeros) when those rows
    hold one class only."""

    def fitted(d: FamilyData, fit: np.ndarray, held: np.ndarray) -> np.ndarray:
        y = d.correct[fit]
        if y.all() or not y.any():
            return np.zeros(int(held.sum()))
        return score(d, fit, held)

    return fitted


def _agreement_probe(d: FamilyData, fit: np.ndarray, held: np.ndarray) -> np.ndarray:
    """A probe trained to predict whether the base's samples agree with its answer (a semantic-entropy
    probe in spirit: the target is the model's own consistency, not correctness), read at one generation."""
    target = d.agreement >= 0.5
    if target[fit].all() or not target[fit].any():
        return np.zeros(int(held.sum()))
    probe = HiddenStateProbe(C=0.003, answer_weight=3.0).fit(_rows(d, fit), target[fit])
    return probe.score_batch(_rows(d, held))


#: name -> (score(data, fit_rows, held_rows) -> raw scores of the held rows, what it needs besides the answer)
FAMILY_ESTIMATORS: dict[str, tuple[Callable[[FamilyData, np.ndarray, np.ndarray], np.ndarray], tuple[str, ...]]] = {
    **{name: (_statistic(name), ()) for name in STATISTICS},
    "logit_lr": (_fitted(_logit_lr(False)), ()),
    "probe_C0.003": (_fitted(_probe(0.003)), ()),
    "probe_C0.03": (_fitted(_probe(0.03)), ()),
    "probe_layers": (_fitted(_probe_layers(False)), ("layers",)),
    "p_true": (lambda d, fit, held: d.p_true[held], ("p_true",)),
    "logit_lr+p_true": (_fitted(_logit_lr(True)), ("p_true",)),
    "probe_layers+p_true": (_fitted(_probe_layers(True)), ("layers", "p_true")),
    "sample_agreement": (lambda d, fit, held: d.agreement[held], ("samples",)),
    "agreement_probe": (_agreement_probe, ("samples_to_fit",)),
}


def _scorer(d: FamilyData, name: str):
    if d.extra and name in d.extra:
        return lambda d_, fit, held: d_.extra[name][held]
    return FAMILY_ESTIMATORS[name][0]


def available_estimators(d: FamilyData) -> list[str]:
    """The estimators ``d`` has the inputs for, then its ``extra`` scores."""
    have = {
        "layers": bool(d.layers),
        "p_true": d.p_true is not None,
        "samples": d.agreement is not None,
        "samples_to_fit": d.agreement is not None,
    }
    names = [n for n, (_, needs) in FAMILY_ESTIMATORS.items() if all(have[x] for x in needs)]
    return names + list(d.extra or {})


def out_of_family_scores(d: FamilyData, name: str, rows: np.ndarray) -> np.ndarray:
    """Scores of ``rows``, each family's from the estimator fitted on the other families among ``rows``:
    what a calibrator must be fitted on to behave on a family its estimator never saw."""
    score = _scorer(d, name)
    out = np.zeros(int(rows.sum()))
    fams = d.family[rows]
    for fam in dict.fromkeys(fams.tolist()):
        held = rows & (d.family == fam)
        out[fams == fam] = score(d, rows & ~held, held)
    return out


def leave_one_family_out(
    d: FamilyData,
    estimators: Sequence[str] | None = None,
    *,
    general_families: Sequence[str] = (),
    min_class: int = 10,
    bootstrap: int = 500,
    target_error: float | None = 0.3,
    delta: float = 0.1,
) -> dict[str, dict[str, Any]]:
    """Per estimator: per held-out family ``n, right, wrong, auroc, auroc_ci, prr, ece, headline`` and,
    with ``target_error``, ``threshold``: the threshold whose base-answered error is at most
    ``target_error`` with probability ``1 - delta`` on the other families (their out-of-family calibrated
    confidences, :func:`~adaptive_moe.uncertainty.calibration.threshold_for_error_rate`), and the error
    and coverage it realises on the held-out family (does the guarantee survive a new kind of question?); and
    ``mean_auroc`` (families with at least ``min_class`` right and wrong answers), ``general_auroc`` and
    ``general_prr`` (the same over ``general_families``), ``pooled_auroc`` / ``pooled_ece`` (every held-out
    family's calibrated confidences together)."""
    fams = d.families
    if len(fams) < 2:
        raise InvalidInputError(f"leave-one-family-out needs at least two families; got {fams}")
    names = list(estimators) if estimators is not None else available_estimators(d)
    unknown = [n for n in names if n not in FAMILY_ESTIMATORS and not (d.extra and n in d.extra)]
    if unknown:
        raise InvalidInputError(f"unknown estimators {unknown}; allowed: {available_estimators(d)}")
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        score = _scorer(d, name)
        per: dict[str, dict[str, Any]] = {}
        confs, ys = [], []
        for fam in fams:
            held = d.family == fam
            fit = ~held
            y = d.correct[held]
            raw = score(d, fit, held)
            raw_fit = out_of_family_scores(d, name, fit) if len(fams) > 2 else score(d, fit, fit)
            if 0 < d.correct[fit].sum() < fit.sum():
                conf = np.asarray(make_calibrator("isotonic").fit(raw_fit, d.correct[fit])(raw), dtype=np.float64)
            else:
                conf = np.full(raw.shape, float(d.correct[fit].mean()))
            confs.append(conf)
            ys.append(y)
            threshold = None
            if target_error is not None and 0 < d.correct[fit].sum() < fit.sum():
                fit_conf = make_calibrator("isotonic").fit(raw_fit, d.correct[fit])(raw_fit)
                t = threshold_for_error_rate(fit_conf, d.correct[fit], target_error, delta)
                answered = conf >= t.tau if t.feasible else np.zeros(y.size, bool)
                threshold = {"target": target_error, "delta": delta, "feasible": t.feasible, "tau": float(t.tau),
                             "coverage_fit": t.coverage, "coverage": float(answered.mean()),
                             "error": float(1 - y[answered].mean()) if answered.any() else None}  # fmt: skip
            both = 0 < y.sum() < y.size
            per[fam] = {
                "n": int(y.size), "right": int(y.sum()), "wrong": int((~y).sum()),
                "auroc": float(auroc(raw, y)) if both else None,
                "auroc_ci": list(bootstrap_ci(auroc, raw, y, n=bootstrap)) if both and bootstrap else None,
                "prr": float(prr(raw, y.astype(float))) if both else None,
                "ece": float(ece(conf, y)),
                "headline": bool(min(int(y.sum()), int((~y).sum())) >= min_class),
                "threshold": threshold,
            }  # fmt: skip
        head = [r["auroc"] for r in per.values() if r["headline"]]
        gen = [f for f in general_families if f in per and per[f]["headline"]]
        conf_all, y_all = np.concatenate(confs), np.concatenate(ys)
        out[name] = {
            "families": per,
            "mean_auroc": _mean(head),
            "headline_families": len(head),
            "general_auroc": _mean(per[f]["auroc"] for f in gen),
            "general_prr": _mean(per[f]["prr"] for f in gen),
            "pooled_auroc": float(auroc(conf_all, y_all)) if 0 < y_all.sum() < y_all.size else None,
            "pooled_ece": float(ece(conf_all, y_all)),
        }
    return out


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def shipping_choice(results: dict[str, dict[str, Any]], costs: dict[str, float], max_cost: float = 1.1,
                    exclude: Sequence[str] = ()) -> dict[str, Any]:  # fmt: skip
    """The shipping rule: among estimators that cost under ``max_cost`` generations, the best
    leave-one-family-out general-knowledge AUROC, provided it is never below the best single logit
    statistic (the statistic with the best general-knowledge AUROC) on any headline family (one with
    enough right and wrong answers to rank). Returns ``chosen`` (``None`` when nothing qualifies),
    ``eligible``, ``excluded`` (name -> why) and ``reference`` (that statistic)."""
    stats = [s for s in STATISTICS if s in results and results[s]["general_auroc"] is not None]
    reference = max(stats, key=lambda s: results[s]["general_auroc"], default=None)
    fams = [] if reference is None else [f for f, r in results[reference]["families"].items() if r["headline"]]
    eligible, why = [], {}
    for name, r in results.items():
        if name in exclude or r["general_auroc"] is None:
            continue
        worse = [f for f in fams if (r["families"][f]["auroc"] or 0.0) < results[reference]["families"][f]["auroc"]]
        if costs.get(name, 1.0) >= max_cost:
            why[name] = f"cost {costs.get(name, 1.0):.2f}x >= {max_cost}x a generation"
        elif worse:
            why[name] = f"below {reference} on " + ", ".join(
                f"{f} ({r['families'][f]['auroc']:.3f} < {results[reference]['families'][f]['auroc']:.3f})"
                for f in worse
            )
        else:
            eligible.append(name)
    chosen = max(eligible, key=lambda e: results[e]["general_auroc"], default=None)
    return {"chosen": chosen, "eligible": eligible, "excluded": why, "reference": reference}


def measure_costs(
    base,
    questions: Sequence[str],
    generation: GenerationConfig,
    layers: Sequence[int],
    rounds: int = 3,
    samples: int = 0,
) -> dict[str, float]:
    """Each estimator's cost as a multiple of one generation of ``questions``: 1 plus its extra passes
    (the layer states, P(True), ``samples`` sampled answers), timed on the same questions, medians over
    ``rounds``. A probe trained on sampled answers needs none at inference (cost 1)."""
    import statistics
    import time

    ratios: dict[str, list[float]] = {"layers": [], "p_true": [], "samples": [], "samples_to_fit": []}
    for _ in range(max(1, rounds)):
        t0 = time.perf_counter()
        sig = base.generate_with_signals(list(questions), generation)
        t_gen = max(time.perf_counter() - t0, 1e-9)
        t0 = time.perf_counter()
        layer_query_states(base, questions, generation, layers)
        ratios["layers"].append((time.perf_counter() - t0) / t_gen)
        t0 = time.perf_counter()
        p_true_scores(base, questions, [x.text for x in sig], generation)
        ratios["p_true"].append((time.perf_counter() - t0) / t_gen)
        t0 = time.perf_counter()
        if samples:
            sample_agreement(base, questions, [x.text for x in sig], generation, k=samples)
        ratios["samples"].append((time.perf_counter() - t0) / t_gen)
        ratios["samples_to_fit"].append(0.0)
    extra = {k: statistics.median(v) for k, v in ratios.items()}
    return {name: 1.0 + sum(extra[n] for n in needs) for name, (_, needs) in FAMILY_ESTIMATORS.items()}


def default_layers(base) -> list[int]:
    """A third, two thirds and all of the base's decoder layers (what ``probe_layers`` reads)."""
    depth = int(base.model.config.num_hidden_layers)
    return sorted({max(1, depth // 3), max(1, 2 * depth // 3), depth})


def evaluate_families(
    base,
    labelled,
    generation: GenerationConfig,
    *,
    general_families: Sequence[str] | None = None,
    min_class: int = 10,
    bootstrap: int = 200,
    cost_rounds: int = 1,
    cost_questions: int = 16,
) -> dict[str, Any]:
    """Leave-one-family-out over labelled base answers (a ``label_base_answers`` Dataset with a
    ``family`` column): computes the extra passes, evaluates every estimator, measures costs and applies
    :func:`shipping_choice`. ``general_families`` defaults to the families whose questions have no
    domain (the base's own knowledge). Returns ``{"results", "costs", "choice", "general_families"}``."""
    from .training import GENERAL, signals_from_row

    if "family" not in labelled.column_names:
        raise InvalidInputError("the labelled questions carry no 'family' field; add one per question")
    families = [str(f) if f else "" for f in labelled["family"]]
    if any(not f for f in families):
        raise InvalidInputError("every question needs a non-empty 'family' when any has one")
    if general_families is None:
        domains = labelled["domain"]
        general_families = [f for f in dict.fromkeys(families)
                            if all(d == GENERAL for d, g in zip(domains, families, strict=True) if g == f)]  # fmt: skip
    signals = [signals_from_row(r) for r in labelled]
    questions = [s.prompt for s in signals]
    layers = default_layers(base)
    data = FamilyData(signals, labelled["correct"], families, layer_query_states(base, questions, generation, layers),
                      p_true_scores(base, questions, labelled["answer"], generation))  # fmt: skip
    results = leave_one_family_out(data, general_families=general_families, min_class=min_class,
                                   bootstrap=bootstrap)  # fmt: skip
    costs = measure_costs(base, questions[:cost_questions], generation, layers, cost_rounds)
    return {"results": results, "costs": costs, "choice": shipping_choice(results, costs),
            "general_families": list(general_families)}  # fmt: skip


def threshold_table(results: dict[str, dict[str, Any]], names: Sequence[str]) -> list[str]:
    """A Markdown table of the target-error threshold per held-out family: realised error and coverage."""
    first = results[names[0]]["families"]
    fams = [f for f, r in first.items() if r.get("threshold")]
    if not fams:
        return []
    target = first[fams[0]]["threshold"]["target"]
    lines = [f"| estimator (target error {target:.2f}) | " + " | ".join(f"{f}: error / coverage" for f in fams) + " |",
             "|---|" + "---|" * len(fams)]  # fmt: skip
    for name in names:
        cells = []
        for f in fams:
            t = results[name]["families"][f]["threshold"]
            cells.append("infeasible" if not t["feasible"] else f"{_f(t['error'])} / {t['coverage']:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _f(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def family_table(results: dict[str, dict[str, Any]], costs: dict[str, float] | None = None) -> list[str]:
    """A Markdown table: one row per estimator, headline figures then AUROC per held-out family."""
    first = next(iter(results.values()))
    fams = list(first["families"])
    head = (
        "| estimator | cost (x generation) | mean AUROC | general-knowledge AUROC | general-knowledge PRR "
        "| pooled AUROC (all families) | pooled ECE | "
    )
    lines = [head + " | ".join(f"AUROC {f}" for f in fams) + " |", "|---|---|---|---|---|---|---|" + "---|" * len(fams)]
    for name, r in results.items():
        cells = []
        for f in fams:
            row = r["families"][f]
            ci = row.get("auroc_ci")
            cells.append(_f(row["auroc"]) + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""))
        cost = f"{costs[name]:.2f}" if costs and name in costs else "—"
        lines.append(f"| {name} | {cost} | {_f(r['mean_auroc'])} | {_f(r['general_auroc'])} | {_f(r['general_prr'])} "
                     f"| {_f(r['pooled_auroc'])} | {_f(r['pooled_ece'])} | " + " | ".join(cells) + " |")  # fmt: skip
    return lines
