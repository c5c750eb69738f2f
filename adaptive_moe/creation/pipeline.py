"""The expert-creation pipeline: documents for a domain -> training data -> LoRA -> evaluation ->
admission -> registered expert.

Every stage is timed and logged. The work lives in ``<workspace>/creating/<name>/`` until the expert
is registered: ``data.json`` (the training set), ``adapter/`` (written atomically by ``train_lora``)
and ``evaluation.json``. A run that crashed resumes where it stopped when it is started again with the
same inputs and settings (a changed input starts over). Registering is one atomic step of the
registry, so an interrupted or rejected run registers nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, OutputExistsError
from ..experts.card import validate_expert_name
from ..utils.io import atomic_write_text

logger = logging.getLogger(__name__)

WORK_DIR = "creating"
STATE_FILE = "state.json"


@dataclass
class CreationResult:
    """What :func:`create_expert` did.

    Attributes:
        name: the expert's name.
        admitted: it passed the admission gate and is registered (``card`` is its card).
        metrics: domain accuracy base / expert / routed, general accuracy of the routed system without
            and with it, flips, the share of general questions routed to it.
        reasons: the admission criteria with their numbers.
        timings: seconds per stage (``data``, ``train``, ``evaluate``, ``register``) and ``total``.
        data: counts of the training set (facts, questions, documents, held out).
        report: the full :class:`~adaptive_moe.creation.evaluation.AdmissionReport`.
        card: the registered :class:`~adaptive_moe.experts.ExpertCard` when admitted.
        resolved_gaps: ids of the gap-ledger entries the new expert now covers.
        resumed: stages skipped because an earlier run had finished them.
    """

    name: str
    admitted: bool
    metrics: dict[str, Any]
    reasons: list[str]
    timings: dict[str, float]
    data: dict[str, Any]
    report: Any = None
    card: Any = None
    resolved_gaps: list[int] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "admitted": self.admitted, "metrics": self.metrics, "reasons": self.reasons,
                "timings": self.timings, "data": self.data, "resolved_gaps": self.resolved_gaps,
                "resumed": self.resumed, "card": self.card.to_dict() if self.card is not None else None}  # fmt: skip

    def __str__(self) -> str:
        m = self.metrics
        lines = [f"expert {self.name!r}: {'ADMITTED' if self.admitted else 'REJECTED'}",
                 *[f"  - {r}" for r in self.reasons],
                 f"  domain accuracy: base {m.get('domain_accuracy_base', 0):.2f}, expert "
                 f"{m.get('domain_accuracy', 0):.2f}, routed system {m.get('domain_accuracy_routed', 0):.2f}",
                 "  stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items())]  # fmt: skip
        return "\n".join(lines)


def _user_questions_data(questions: Any, heldout_questions: Any):
    """A training set of the user's own question-answer pairs alone (no documents)."""
    from .data import Source, TrainingData
    from .training import as_examples

    train = [(e.prompt, e.text) for e in as_examples(questions) if e.is_qa]
    if not train:
        raise InvalidInputError("questions: give (question, answer) pairs when no documents are given")
    if heldout_questions is None:
        raise InvalidInputError(
            "without documents the questions are all for training; pass heldout_questions= (worded unlike the "
            "training ones) so the expert can be evaluated before it is admitted"
        )
    from .evaluation import _split_qa

    hq, hg = _split_qa(list(heldout_questions))
    digest = hashlib.sha256(json.dumps([train, hq, hg]).encode()).hexdigest()
    source = Source("questions", sum(len(q) + len(a) for q, a in train), digest)
    stats = {"qa_train": len(train), "qa_heldout": len(hq), "documents": 0}
    return TrainingData(train=train, heldout=list(zip(hq, hg, strict=True)), facts=[], sources=[source], stats=stats,
                        sha256=digest)  # fmt: skip


def create_expert(
    moe,
    name: str,
    documents: Any = None,
    questions: Any = None,
    *,
    heldout_questions: Any = None,
    domain: str = "",
    new_version: bool = False,
    lora=None,
    general: Sequence[Any] | None = None,
    progress: bool = True,
    resume: bool = True,
) -> CreationResult:
    """Grow expert ``name`` for ``moe`` (an :class:`~adaptive_moe.AdaptiveMoE`) from documents.

    Args:
        documents: files (.txt, .md, .jsonl), folders, texts or a ``datasets.Dataset`` (see
            :func:`~adaptive_moe.creation.data.build_training_data`); ``None`` with ``questions`` alone.
        questions: the user's own question-answer pairs, trained on as given.
        heldout_questions: pairs for evaluation only (needed when there are no documents).
        domain: what the expert covers, in words (default: from the documents' first line).
        new_version: when ``name`` exists, add a new version instead of failing.
        lora: :class:`~adaptive_moe.config.LoRASettings` (default: ``config.creation.lora``).
        general: the general check set for the admission gate (default: the shipped one).
        resume: pick up the stages a crashed run with the same inputs finished.

    Raises:
        OutputExistsError: ``name`` exists and ``new_version`` is false (checked before any work).
        InvalidInputError: empty or binary documents, too little text for a question, bad names.
    """
    from .data import build_training_data
    from .evaluation import evaluate_candidate
    from .training import log_run_summary, process_rank, train_lora, wait_for_everyone, world_size

    validate_expert_name(name)
    if name in moe.experts and not new_version:
        raise OutputExistsError(f"expert {name!r} exists; pass new_version=True to add a version, or pick another name")
    cfg = moe.config.creation
    if cfg.check_scorer != "auto":  # an unknown scorer is refused before any work (the error lists the known ones)
        from ..evaluation.scoring import get_scorer

        get_scorer(cfg.check_scorer)
    lora = lora or cfg.lora
    started = time.perf_counter()
    timings: dict[str, float] = {}
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    run_dir = moe.config.workspace_path("runs") / f"{name}-{stamp}"  # the tracker's run (creation.report_to)

    t = time.perf_counter()
    if documents is None:
        if questions is None:
            raise InvalidInputError("create_expert needs documents or question-answer pairs")
        data = _user_questions_data(questions, heldout_questions)
    elif cfg.method == "augment":
        from .augment import augmented_training_data

        _check_documents(documents, cfg)
        data = augmented_training_data(
            documents,
            questions=questions,
            heldout_questions=heldout_questions,
            restatements=cfg.restatements,
            heldout_fraction=cfg.heldout_fraction,
        )
    else:
        _check_documents(documents, cfg)
        shared_reader = cfg.method == "retrieval" and cfg.reader == "shared"
        data = build_training_data(documents, questions=questions, heldout_questions=heldout_questions,
                                   restatements=cfg.restatements, heldout_fraction=cfg.heldout_fraction,
                                   min_facts=0 if shared_reader else 1)  # fmt: skip
    kind, extra, train_items, index, reader = "lora", {}, list(data.train), None, None
    generated: list[tuple[str, list[str]]] = []
    if cfg.question_model and documents is not None:
        from ..documents import load_passages
        from .questions import generated_questions, question_generator

        generated = generated_questions(question_generator(moe, cfg.question_model), load_passages(documents))
        data.stats["generated_questions"] = len(generated)
    if cfg.method == "retrieval" and documents is not None:
        from ..model.encoders import make_embedder
        from .retrieval import build_index, key_value_questions, reading_examples

        embedder = make_embedder("minilm")
        index = build_index(documents, embedder)
        if cfg.reader == "shared":
            # nothing is trained on the documents, so every rule-made question (and every `label: value`
            # line of a table or list, and every generated question) can check the expert before admission
            checks = key_value_questions(index.passages) + generated
            data.heldout = _check_questions(data, checks, cfg.check_questions)
        else:
            # each question with the passages retrieval gives it (as at answer time), plus the documents'
            # own restatements and sentences, which the LoRA also learns (a fallback when retrieval misses)
            pairs = data.qa_pairs + [(q, a[0]) for q, a in generated]
            train_items = (
                reading_examples(pairs, index, embedder, cfg.retrieval_top_k, cfg.retrieval_lexical_weight)
                + data.documents
            )
            lora = lora.replace(max_length=max(lora.max_length, cfg.retrieval_max_length))
        kind = "retrieval"
        extra = {"retrieval": {"top_k": cfg.retrieval_top_k, "passages": len(index.passages), "reader": cfg.reader,
                               "quote": cfg.retrieval_quote, "readings": list(cfg.retrieval_readings),
                               "lexical_weight": cfg.retrieval_lexical_weight,
                               "sentence_match_weight": cfg.retrieval_sentence_match_weight,
                               "rerank_weight": cfg.retrieval_rerank_weight,
                               "rerank_candidates": cfg.retrieval_rerank_candidates}}  # fmt: skip
        data.stats.update(passages=len(index.passages), check_questions=len(data.heldout))
    if not data.heldout:
        raise InvalidInputError(
            f"the documents gave no question to hold out for evaluation ({data.stats.get('facts', 0)} facts); "
            "add documents or pass heldout_questions="
        )
    if index is not None and cfg.reader == "shared":
        from .reader import reader_for

        # training a reader (once per base) attaches its own LoRA: the pool's experts come back on demand
        reader = reader_for(moe.base, moe.config.workspace_path(), steps=cfg.reader_steps, progress=progress,
                            before_training=moe.pool.clear)  # fmt: skip
    timings["data"] = time.perf_counter() - t
    logger.info("expert %s: training data %s", name, json.dumps(data.stats))

    work = moe.config.workspace_path(WORK_DIR) / name
    key = hashlib.sha256(json.dumps([data.sha256, lora.to_dict(), moe.base.fingerprint, cfg.to_dict()],
                                    sort_keys=True, default=str).encode()).hexdigest()  # fmt: skip
    resumed: list[str] = []
    if process_rank() == 0:  # under accelerate launch, process 0 alone prepares the work folder
        state = _read_state(work)
        if state.get("key") != key or not resume:
            if work.exists():
                logger.info("expert %s: starting over (inputs or settings changed since the last run)", name)
                shutil.rmtree(work)
            work.mkdir(parents=True)
            state = {"key": key, "stages": []}
            _write_state(work, state)
        atomic_write_text(work / "data.json", json.dumps({"stats": data.stats, "sha256": data.sha256,
                                                          "heldout": data.heldout}, indent=1))  # fmt: skip
    wait_for_everyone()  # the others read the state process 0 wrote
    state = _read_state(work)

    adapter = work / "adapter"
    t = time.perf_counter()
    index_ready = index is None or (adapter / "passages.json").is_file()
    if "train" in state["stages"] and (adapter / "adapter_model.safetensors").is_file() and index_ready:
        resumed.append("train")
        logger.info("expert %s: resuming, the adapter trained by an earlier run is in %s", name, adapter)
    else:
        if adapter.exists() and process_rank() == 0:
            shutil.rmtree(adapter)
        wait_for_everyone()
        if reader is not None:
            from .reader import copy_reader

            if process_rank() == 0:
                copy_reader(reader, adapter)
        else:
            with moe.base.lock:
                moe.pool.clear()  # training attaches its own LoRA: the pool's experts come back on demand
                train_lora(moe.base, train_items, adapter, lora=lora, progress=progress,
                           generation=moe.config.generation, report_to=cfg.report_to, run_dir=run_dir)  # fmt: skip
        if index is not None and process_rank() == 0:
            index.save(adapter)
        state["stages"].append("train")
        if process_rank() == 0:
            _write_state(work, state)
    timings["train"] = time.perf_counter() - t
    if process_rank() != 0:  # under accelerate launch: rank 0 evaluates, registers and records; the others stop
        logger.info("expert %s: process %d trained; process 0 evaluates and registers", name, process_rank())
        why = f"process {process_rank()} of {world_size()}: process 0 evaluates and registers"
        return CreationResult(
            name=name,
            admitted=False,
            metrics={},
            reasons=[why],
            timings=timings,
            data=dict(data.stats),
            report=None,
            card=None,
            resolved_gaps=[],
            resumed=resumed,
        )

    t = time.perf_counter()
    training_questions = [q for q, _ in data.qa_pairs] + [q for q, _ in generated] or [domain or name]
    if index is not None:  # the matcher learns the domain from every passage too, not only from questions
        training_questions += [p.text for p in index.passages]
    elif cfg.method == "augment" and documents is not None:  # and from the passages and sentences learnt
        training_questions += data.documents
    report = evaluate_candidate(moe, name, adapter, data.heldout, training_questions=training_questions,
                                general=general, forced_general=cfg.forced_general_questions,
                                domain_scorer=_check_scorer(cfg, reader is not None), progress=progress,
                                kind=kind, extra=extra)  # fmt: skip
    atomic_write_text(work / "evaluation.json", json.dumps(report.to_dict(), indent=1, default=str))
    timings["evaluate"] = time.perf_counter() - t
    logger.info("expert %s: %s", name, report)

    card, resolved = None, []
    t = time.perf_counter()
    if report.admitted:
        description = domain or _describe(data, name)
        memory = _training_memory(adapter)
        if memory:  # the training's peak memory (CPU RSS, GPU allocated) goes in the card too
            extra = {**extra, "training_memory": memory}
        card = moe.add_expert(adapter, name, domain=description, questions=training_questions,
                              new_version=new_version, metrics=report.metrics(), kind=kind, extra=extra)  # fmt: skip
        resolved = moe.resolve_gaps(name)
        shutil.rmtree(work, ignore_errors=True)  # registered: the work folder has served
    timings["register"] = time.perf_counter() - t
    if cfg.report_to != "none":  # the tracker's run gets the admission, and the expert card when admitted
        texts = {"config": cfg.to_dict(), "data": dict(data.stats), "evaluation": report.to_dict()}
        if card is not None:
            texts["card"] = card.to_dict()
        metrics = {**report.metrics(), "admitted": float(report.admitted)}
        log_run_summary(cfg.report_to, run_dir, metrics=metrics, texts=texts)
    timings["total"] = time.perf_counter() - started
    return CreationResult(name=name, admitted=report.admitted, metrics=report.metrics(), reasons=report.reasons,
                          timings=timings, data=dict(data.stats), report=report, card=card, resolved_gaps=resolved,
                          resumed=resumed)  # fmt: skip


def _check_documents(documents: Any, cfg) -> None:
    """Refuse, before any work, documents longer than ``creation.max_document_chars`` in all or in a language
    not in ``creation.languages``."""
    from ..documents import load_documents
    from ..documents.language import check_language

    loaded = load_documents(documents)  # read once for both checks
    total, limit = sum(source.chars for source, _, _ in loaded), cfg.max_document_chars
    if total > limit:
        raise InvalidInputError(
            f"the documents hold {total:,} characters, more than creation.max_document_chars={limit:,}; "
            "split them into several experts or raise the limit"
        )
    for source, text, _ in loaded:
        check_language(source.name, text, cfg.languages)


def _check_scorer(cfg, shared_reader: bool) -> str:
    """The scorer that judges the check questions (``creation.check_scorer``; ``auto``: see its help)."""
    if cfg.check_scorer != "auto":
        return cfg.check_scorer
    return "f1" if shared_reader else "contains"


def _check_questions(data, extra: list[tuple[str, list[str]]], limit: int) -> list[tuple[str, list[str]]]:
    """The user's held-out pairs, then rule-made and ``extra`` questions (one per question text), at most
    ``limit`` in all, spread evenly over the documents' order."""
    user = [(q, list(a)) for q, a in data.heldout[len(data.heldout) - data.stats.get("user_heldout_questions", 0) :]]
    made = [(q, [a]) for q, a in data.qa_pairs] + [(q, list(a)) for q, a in data.heldout] + list(extra)
    seen, unique = {q for q, _ in user}, []
    for q, a in made:
        if q not in seen:
            seen.add(q)
            unique.append((q, a))
    room = max(limit - len(user), 0)
    if len(unique) > room:
        step = len(unique) / room if room else 0
        unique = [unique[int(i * step)] for i in range(room)]
    return user + unique


def _describe(data, name: str) -> str:
    subjects: dict[str, int] = {}
    for fact in data.facts:
        subjects[fact.subject] = subjects.get(fact.subject, 0) + 1
    top = sorted(subjects, key=lambda s: -subjects[s])[:3]
    return f"{name}: " + ", ".join(top) if top else name


def _training_memory(adapter: Path) -> dict[str, Any] | None:
    from .training import TRAINING_RECORD

    try:
        return json.loads((adapter / TRAINING_RECORD).read_text()).get("memory")
    except (OSError, ValueError, AttributeError):
        return None


def _read_state(work: Path) -> dict[str, Any]:
    try:
        return json.loads((work / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _write_state(work: Path, state: dict[str, Any]) -> None:
    atomic_write_text(work / STATE_FILE, json.dumps(state))
