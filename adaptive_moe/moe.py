"""``AdaptiveMoE``: the facade that wires config -> base model -> router -> expert pool -> integrator.

How one call flows (``router.mode: post``, the default)::

    prompts --ONE base generate pass (signals)--> router --> base   : the base answer, as is
                                                         --> expert : pool.acquire -> integrator -> re-score
                                                                      (below the floor: next expert, then abstain)
                                                         --> gap    : the base answer, flagged; query -> gap ledger

A batch costs one base pass plus one pass per group of prompts routed to the same experts. In ``pre``
mode the router decides from the prompts' hidden states (one forward pass, no generation) and only
base- and gap-routed prompts get a base answer. An expert answer always re-runs its prompt pass: a
LoRA on the attention projections changes the KV cache, so the base's cache cannot be reused.

One owner of the model: every call holds ``base.lock``, so the facade is safe to share between threads
(calls run one at a time on the one model).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import AdaptiveMoEConfig
from .errors import IncompatibleExpertError, InvalidInputError, ModelNotFoundError, UnknownNameError
from .integration import ExpertAnswer, integrator_class
from .model import BaseModel, load_base_model
from .model.generation import _is_conversation, normalize_prompts
from .output import MoEOutput, base_output, cache_events, expert_output
from .routing import Query, RouteDecision, Router, load_saved_router, router_class
from .streaming import MoEStream
from .utils.io import atomic_directory, atomic_write_text
from .utils.lifecycle import Closable

logger = logging.getLogger(__name__)

CONFIG_FILE = "adaptive_moe.yaml"
MANIFEST_FILE = "adaptive_moe.json"
ROUTER_DIR = "router"
_GENERATION_KEYS = ("max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "repetition_penalty", "seed",
                    "stop", "system_prompt", "batch_size")  # fmt: skip


class AdaptiveMoE(Closable):
    """A frozen base model, an uncertainty router, a pool of LoRA experts and an integrator.

    Args:
        config: an :class:`AdaptiveMoEConfig` (default: the embedded SmolLM2 on CPU), or a path to a
            YAML config file.
        base: an already loaded :class:`~adaptive_moe.model.loading.BaseModel` (else loaded from
            ``config.model``).
        router: a :class:`~adaptive_moe.routing.Router` (else the one saved in the workspace's
            ``router/`` folder, else a new ``config.router.name`` router).

    Attributes: ``base``, ``experts`` (the :class:`~adaptive_moe.experts.ExpertRegistry`), ``pool``,
    ``router``, ``integrator``, ``gaps`` (the :class:`~adaptive_moe.gaps.GapLedger`, or ``None``
    when ``gaps.enabled`` is off), ``config``.
    """

    def __init__(
        self, config: AdaptiveMoEConfig | str | Path | None = None, *, base: BaseModel | None = None,
        router: Router | None = None,
    ) -> None:  # fmt: skip
        from .experts import ExpertPool, ExpertRegistry

        if isinstance(config, (str, Path)):
            config = AdaptiveMoEConfig.from_yaml(config)
        if config is not None and not isinstance(config, AdaptiveMoEConfig):
            raise InvalidInputError(f"config must be an AdaptiveMoEConfig or a YAML path, got {type(config).__name__}")
        self.config = config or AdaptiveMoEConfig()
        self.config.validate()
        self.base = base if base is not None else load_base_model(self.config.model)
        self.experts = ExpertRegistry(self.config.registry_path, allow_pickle=self.config.pool.allow_pickle)
        self.pool = ExpertPool(self.base, self.experts, config=self.config.pool)
        self.router = router if router is not None else self._load_router()
        cls = integrator_class(self.config.integrator.strategy)
        self.integrator = cls(self.config.integrator, self.pool, cache_dir=self.config.workspace_path("cache/merged"))
        self.gaps = None
        if self.config.gaps.enabled:
            from .gaps import GapLedger

            self.gaps = GapLedger.from_config(self.config.gaps, self.config.workspace)
        self._calibrators: dict[tuple[str, int], Any] = {}
        self._calibrator_overrides: dict[str, Any] = {}
        self.sync_experts()

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, path: str | Path, **kwargs: Any) -> AdaptiveMoE:
        """Build from a YAML config file (see ``configs/default.yaml``)."""
        return cls(AdaptiveMoEConfig.from_yaml(path), **kwargs)

    @classmethod
    def from_pretrained(cls, folder: str | Path, **kwargs: Any) -> AdaptiveMoE:
        """Load a system written by :meth:`save_pretrained`: its config, router and experts (the base
        model is loaded from the config and must have the fingerprint the experts were made for)."""
        folder = Path(folder)
        if not (folder / CONFIG_FILE).is_file():
            raise ModelNotFoundError(f"{str(folder)!r} holds no saved AdaptiveMoE (missing {CONFIG_FILE})")
        config = AdaptiveMoEConfig.from_yaml(folder / CONFIG_FILE).replace(workspace=str(folder))
        moe = cls(config, **kwargs)
        manifest = json.loads((folder / MANIFEST_FILE).read_text()) if (folder / MANIFEST_FILE).is_file() else {}
        saved = manifest.get("base_fingerprint")
        if saved and saved != moe.base.fingerprint:
            raise IncompatibleExpertError(
                f"{str(folder)!r} was saved with base {manifest.get('base_name')} (fingerprint {saved[:12]}); the "
                f"loaded base {moe.base.name} has fingerprint {moe.base.fingerprint[:12]}"
            )
        return moe

    def save_pretrained(self, folder: str | Path, *, overwrite: bool = False) -> Path:
        """Write the config, the router and the experts (every version) to ``folder``, atomically.
        The base model is not copied; its fingerprint is recorded and checked on load."""
        folder = Path(folder)
        if folder.exists() and not overwrite:
            from .errors import OutputExistsError

            raise OutputExistsError(f"{str(folder)!r} exists; choose another folder or pass overwrite=True")
        with self.base.lock, atomic_directory(folder, replace=overwrite) as tmp:
            config = self.config.replace(workspace=".", **{"pool.registry": "experts"})
            config.to_yaml(tmp / CONFIG_FILE)
            self.router.save(tmp / ROUTER_DIR)
            shutil.copytree(self.experts.root, tmp / "experts", ignore=shutil.ignore_patterns(".*"))
            manifest = {"base_fingerprint": self.base.fingerprint, "base_name": self.base.name,
                        "experts": self.experts.names(), "router": self.router.name}  # fmt: skip
            atomic_write_text(tmp / MANIFEST_FILE, json.dumps(manifest, indent=2))
        return folder

    def _router_dir(self) -> Path:
        return self.config.workspace_path(ROUTER_DIR)

    def _load_router(self):
        folder = self._router_dir()
        if (folder / "router.json").is_file():
            router = load_saved_router(folder, self.config.router.name)
            logger.info("router read from %s (its own config, threshold %.2f)", folder, router.config.threshold)
            return router
        if self.config.router.pretrained == "auto":
            from .routing.bundled import embedded_router_for

            shipped = embedded_router_for(self.base)
            if shipped is not None:
                # fitted: estimator, calibration, threshold, matcher; how matches are used is the user's
                mine = self.config.router
                shipped.config = shipped.config.replace(**{k: getattr(mine, k) for k in MATCH_SETTINGS})
                return shipped
        return router_class(self.config.router.name)(self.config.router)

    def save_router(self) -> Path | None:
        """Write the router to the workspace (``router/``), so the next start finds it (``None``: the
        router keeps no state to save)."""
        return self.router.save(self._router_dir())

    # -- experts -------------------------------------------------------------------------------------
    def add_expert(
        self,
        adapter_dir: str | Path,
        name: str,
        *,
        domain: str = "",
        questions: Sequence[str] | None = None,
        new_version: bool = False,
        metrics: dict[str, Any] | None = None,
        kind: str = "lora",
        extra: dict[str, Any] | None = None,
    ):
        """Register a PEFT LoRA adapter as expert ``name`` (checked against the base) and teach the
        router's matcher what it covers: ``questions`` it answers (kept on the card), else its
        ``domain`` description. ``kind`` names the expert class that loads it (``"retrieval"``: the
        folder also holds a passage index); ``extra`` goes on the card. Returns the
        :class:`~adaptive_moe.experts.ExpertCard`."""
        examples = [q for q in (questions or []) if isinstance(q, str) and q.strip()]
        if questions is not None and not examples:
            raise InvalidInputError("questions: give at least one non-empty example question the expert answers")
        if not examples and not domain.strip():
            raise InvalidInputError(f"expert {name!r}: give example questions or a domain description for matching")
        card = self.experts.import_adapter(adapter_dir, name, domain=domain, base=self.base, metrics=metrics,
                                           new_version=new_version, kind=kind,
                                           extra={**(extra or {}), "example_questions": examples})  # fmt: skip
        self.teach_router(name, examples or [domain])
        return card

    def remove_expert(self, name: str) -> None:
        """Remove ``name`` from the registry, the pool and the router's matcher."""
        with self.base.lock:
            if name in self.pool:
                self.pool.evict(name)
            self.experts.remove(name)
            if name in self.router.experts:
                self.router.remove_expert(name)
                self.save_router()

    def create_expert(self, name: str, documents: Any = None, questions: Any = None, **kwargs: Any):
        """Grow an expert from documents (and/or question-answer pairs): training data -> LoRA ->
        evaluation -> admission -> registered, matched by the router, covered gaps resolved. Returns a
        :class:`~adaptive_moe.creation.pipeline.CreationResult` (``.admitted``, ``.metrics``); see
        :func:`~adaptive_moe.creation.pipeline.create_expert` for the options."""
        from .creation.pipeline import create_expert

        return create_expert(self, name, documents, questions, **kwargs)

    def analyze_gaps(self, **kwargs: Any):
        """Cluster the open knowledge gaps into candidate domains: a
        :class:`~adaptive_moe.gaps.GapReport` with, per cluster, its size, mean confidence,
        representative queries, keywords, a suggested expert name and whether an existing expert nearly
        covers it. Keyword arguments go to :func:`~adaptive_moe.gaps.analyze_gaps`."""
        from .gaps import analyze_gaps

        if self.gaps is None:
            raise InvalidInputError("the gap ledger is off (gaps.enabled: false); turn it on to analyse gaps")
        g = self.config.gaps
        matcher = self.router.matcher
        options: dict[str, Any] = {
            "embed": lambda texts: self.embed_queries([Query(t) for t in texts]),
            "min_cluster_size": g.min_cluster_size, "max_clusters": g.max_clusters,
            "nearly_covered": g.nearly_covered, "distance_threshold": g.cluster_distance,
        }  # fmt: skip
        if matcher is not None and matcher.experts:
            options["known_experts"] = matcher.scores
        if matcher is not None and matcher.background is not None:
            options["background"] = matcher.background
        return analyze_gaps(self.gaps, **{**options, **kwargs})

    def resolve_gaps(self, name: str) -> list[int]:
        """Mark the open gaps that expert ``name`` now covers (its match score, from the gap's recorded
        embedding and its words, reaches ``router.min_match_score``) as resolved by it; returns their ids.
        Gaps recorded without an embedding stay open."""
        router = self.router
        if self.gaps is None or router.matcher is None or name not in router.matcher.experts:
            return []
        gaps = [e for e in self.gaps.entries(resolved=False) if e.embedding is not None]
        if not gaps:
            return []
        scores = router.match_scores([Query(e.query) for e in gaps], np.stack([e.embedding for e in gaps]))
        floor = router.config.min_match_score
        return self.gaps.resolve([e.id for e, s in zip(gaps, scores, strict=True) if s.get(name, 0.0) >= floor], name)

    def sync_experts(self) -> None:
        """Make the router's matcher know exactly the registered experts (from each card's example
        questions, else its domain description), and their words
        (:meth:`~adaptive_moe.routing.base.Router.learn_terms`)."""
        if not self.router.learns_experts:
            return
        known, registered = set(self.router.experts), set(self.experts.names())
        changed = False
        for name in sorted(registered - known):
            examples = _card_examples(self.experts.card(name))
            if examples:
                self.teach_router(name, examples, save=False)
                changed = True
            else:
                logger.warning("expert %s has no example questions or domain: the router cannot match it", name)
        for name in sorted(known - registered):
            self.router.remove_expert(name)
            changed = True
        terms = self.router.terms
        for name in sorted((known & registered) - set(terms.experts if terms is not None else known)):
            # a router saved before it matched words: learn them from the card
            self.router.learn_terms(name, _card_examples(self.experts.card(name)))
            changed = True
        if changed and (self._router_dir() / "router.json").is_file():
            self.save_router()

    def teach_router(self, name: str, examples: Sequence[str], save: bool = True) -> None:
        """Let the router's matcher know expert ``name`` from example questions it answers (and save the
        router to the workspace when ``save``)."""
        if not self.router.learns_experts:
            return
        from .routing.training import embed_questions

        matcher = self.router.matcher
        if matcher is not None and matcher.background is None:
            # centre the matcher on general questions (the shipped check set), which no expert should take
            from .creation import general_knowledge_questions

            general = [q for q, _ in general_knowledge_questions()]
            matcher.set_background(embed_questions(self.router, self.base, general))
        self.router.add_expert(name, embed_questions(self.router, self.base, list(examples)))
        self.router.learn_terms(name, list(examples))
        if save:
            self.save_router()

    # -- generation ----------------------------------------------------------------------------------
    def generate(
        self,
        prompts: Any,
        *,
        experts: Sequence[str] | None = None,
        record_gaps: bool = True,
        request_ids: Sequence[str | None] | None = None,
        **settings: Any,
    ):
        """Answer a prompt (a string or chat messages: one :class:`MoEOutput`) or a list of prompts
        (a list of them), routed by the base model's confidence.

        Args:
            prompts: a string, a conversation (``[{"role": "user", "content": ...}, ...]``), or a list of
                either. A conversation is routed by its last user message and answered whole.
            experts: skip the router's choice and answer with these registered experts (equal weights).
            record_gaps: log "gap" queries in the gap ledger (off for evaluation runs).
            request_ids: one id per prompt (or ``None``), stored with its gap record: a prompt whose id the
                ledger already holds (a retried request) is not recorded again.
            **settings: generation settings for this call: ``max_new_tokens``, ``temperature``,
                ``top_p``, ``top_k``, ``do_sample``, ``seed``, ``repetition_penalty``, ``stop``,
                ``system_prompt``, ``batch_size``.
        """
        single = isinstance(prompts, str) or _is_conversation(prompts)
        items = normalize_prompts(prompts)
        if request_ids is not None and len(request_ids) != len(items):
            raise InvalidInputError(
                f"request_ids: {len(request_ids)} ids for {len(items)} prompts; give one per prompt"
            )
        generation = self._generation(settings)
        forced = self._check_forced(experts)
        with self.base.lock:
            outputs = self._answer(items, generation, forced, record_gaps=record_gaps, request_ids=request_ids)
        return outputs[0] if single else outputs

    __call__ = generate

    def answer_streamed(self, prompt: Any, streamer: Any, *, on_route: Any = None, experts: Sequence[str] | None = None,
                        request_id: str | None = None, **settings: Any) -> MoEOutput:  # fmt: skip
        """Answer one prompt while ``streamer`` (a ``transformers`` streamer) receives the tokens of the
        generation that makes the answer, as they come; ``on_route`` is called with the route decision
        (a one-item list) before any of them. For servers and integrations; :meth:`stream` is the
        iterator most users want. In ``post`` mode a base answer is not streamed (it is complete before
        the route is known); an expert answer below the confidence floor is flagged, not replaced."""
        items = normalize_prompts(prompt)
        if len(items) != 1:
            raise InvalidInputError("answer_streamed() takes one prompt (a string or one conversation)")
        generation = self._generation(settings)
        forced = self._check_forced(experts)
        with self.base.lock:
            return self._answer(items, generation, forced, stream=streamer, request_ids=[request_id],
                                on_route=on_route)[0]  # fmt: skip

    def stream(self, prompt: Any, **settings: Any) -> MoEStream:
        """Answer one prompt, yielding text as it is produced: ``for piece in moe.stream(q): ...``.
        In ``pre`` mode the route is decided before the first token; in ``post`` mode after the base
        answered (a base answer then comes at once, an expert answer streams). The finished
        :class:`MoEOutput` is in ``.output`` after the loop. A streamed expert answer is not replaced
        by a fallback: below the confidence floor it is flagged instead."""
        items = normalize_prompts(prompt)
        if len(items) != 1:
            raise InvalidInputError("stream() takes one prompt (a string or one conversation)")
        return MoEStream(self, items[0], self._generation(settings))

    def _generation(self, settings: dict[str, Any]):
        unknown = sorted(set(settings) - set(_GENERATION_KEYS))
        if unknown:
            raise InvalidInputError(f"unknown generation settings {unknown}; allowed: {', '.join(_GENERATION_KEYS)}")
        if "temperature" in settings or "top_p" in settings or "top_k" in settings:
            settings.setdefault("do_sample", True)
        return self.config.generation.replace(**settings) if settings else self.config.generation

    def _check_forced(self, experts: Sequence[str] | None) -> list[tuple[str, float]] | None:
        if experts is None:
            return None
        names = [experts] if isinstance(experts, str) else list(experts)
        if not names or not all(isinstance(n, str) for n in names):
            raise InvalidInputError("experts: give a list of registered expert names")
        known = set(self.experts.names()) | set(self.pool.extra_names)
        for n in names:
            if n not in known:
                raise UnknownNameError("expert", n, known)
        return [(n, 1.0 / len(names)) for n in dict.fromkeys(names)]

    def _answer(self, prompts: list[Any], generation, forced, stream=None, record_gaps=True,
                request_ids=None, on_route=None) -> list[MoEOutput]:  # fmt: skip
        from .model.generation import streaming

        started = time.perf_counter()
        streamed = (lambda: streaming(stream)) if stream is not None else contextlib.nullcontext
        timings: dict[str, float] = {}
        base_signals: list[Any] = [None] * len(prompts)
        mode = self.router.mode
        if mode == "pre":
            with _timed(timings, "route"):
                states = self.base.prompt_states(prompts, generation, layers=self.router.config.pre_layers)
                decisions = self._route([Query(p, states=s) for p, s in zip(prompts, states, strict=True)])
            need_base = [i for i, d in enumerate(decisions) if d.route != "expert" and forced is None]
            if need_base:
                with _timed(timings, "base"), streamed():
                    sigs = self.base.generate_with_signals([prompts[i] for i in need_base], generation)
                for i, s in zip(need_base, sigs, strict=True):
                    base_signals[i] = s
        else:
            with _timed(timings, "base"):
                base_signals = self.base.generate_with_signals(prompts, generation)
            with _timed(timings, "route"):
                decisions = self._route([Query(p, signals=s) for p, s in zip(prompts, base_signals, strict=True)])
        if forced is not None:
            decisions = [_forced_decision(d, forced) for d in decisions]
        if on_route is not None:  # a streaming server sends the route before the answer's tokens
            on_route(decisions)
        outputs = self._complete(prompts, decisions, base_signals, generation, timings, streamed, stream is None,
                                 forced is not None)  # fmt: skip
        timings["total"] = (time.perf_counter() - started) * 1000
        if record_gaps:
            ids = list(request_ids) if request_ids is not None else [None] * len(prompts)
            self._record_gaps([(p, d, o, r) for p, d, o, r in zip(prompts, decisions, outputs, ids, strict=True)
                               if o.route == "gap"])  # fmt: skip
        for out in outputs:
            out.timings = {**timings, **out.timings}
        return outputs

    def complete(self, prompts: Sequence[Any], decisions: Sequence[RouteDecision], base_signals: Sequence[Any],
                 generation=None) -> list[MoEOutput]:  # fmt: skip
        """Answer prompts whose routes are already decided (``base_signals``: the base's answers, used for
        the base and gap routes): what :meth:`generate` does after routing, without the gap ledger.
        Evaluation uses it to answer again only the queries whose route a new expert changes."""
        prompts = normalize_prompts(list(prompts))
        if not len(prompts) == len(decisions) == len(base_signals):
            raise InvalidInputError("complete() needs one decision and one base answer per prompt")
        with self.base.lock:
            return self._complete(prompts, list(decisions), list(base_signals), generation or self.config.generation,
                                  {}, contextlib.nullcontext, True, False)  # fmt: skip

    def _complete(self, prompts, decisions, base_signals, generation, timings, streamed, fallback, forced):
        outputs: list[MoEOutput | None] = [None] * len(prompts)
        groups: dict[tuple, list[int]] = {}
        for i, d in enumerate(decisions):
            if d.route == "expert":
                groups.setdefault(self._group_key(d.experts), []).append(i)
            else:
                outputs[i] = self._base_output(prompts[i], d, base_signals[i])
        expert_ms = 0.0
        for key, rows in groups.items():
            t = time.perf_counter()
            with streamed():
                answered = self._expert_outputs([prompts[i] for i in rows], [decisions[i] for i in rows], list(key),
                                                generation, base_signals, rows, fallback=fallback,
                                                forced=forced)  # fmt: skip
            for i, out in zip(rows, answered, strict=True):
                outputs[i] = out
            expert_ms += (time.perf_counter() - t) * 1000
        if groups:
            timings["experts"] = expert_ms
        return outputs  # type: ignore[return-value]

    def _route(self, queries: list[Query]) -> list[RouteDecision]:
        return list(self.router.route_batch(queries))

    def _group_key(self, experts: Sequence[tuple[str, float]]) -> tuple:
        if self.config.integrator.strategy == "select":
            return ((max(experts, key=lambda e: e[1])[0], 1.0),)  # select only looks at the top expert
        return tuple((n, round(w, 3)) for n, w in experts)

    def _base_output(self, prompt, decision: RouteDecision, signals) -> MoEOutput:
        return base_output(prompt, decision, signals, self.base.tokenizer)

    def _expert_outputs(self, prompts, decisions, experts, generation, base_signals, rows, fallback=True,
                        forced=False):  # fmt: skip
        floor = self.config.integrator.expert_confidence_floor
        before = self.pool.stats
        answers = self.integrator.generate(prompts, experts, generation)
        cache = cache_events(self.pool.stats - before)
        outs = []
        for prompt, decision, answer, row in zip(prompts, decisions, answers, rows, strict=True):
            conf = self.expert_confidence(answer)
            tried = [(answer, conf, cache)]
            if conf < floor and fallback and not forced and self.config.integrator.fallback:
                for name in self._fallbacks(decision, answer):
                    before = self.pool.stats
                    alt = self.integrator_for_fallback().generate([prompt], [(name, 1.0)], generation)[0]
                    alt_conf = self.expert_confidence(alt)
                    tried.append((alt, alt_conf, cache_events(self.pool.stats - before)))
                    if alt_conf >= floor:
                        break
            outs.append(self._final_output(prompt, decision, tried, floor, base_signals[row], forced))
        return outs

    def integrator_for_fallback(self):
        """The integrator that answers a fallback expert alone (``select``)."""
        from .integration import SelectIntegrator

        return SelectIntegrator(self.config.integrator, self.pool)

    def _fallbacks(self, decision: RouteDecision, answer: ExpertAnswer) -> list[str]:
        used = {n for n, _ in answer.experts}
        floor = self.router.config.min_match_score
        ranked = sorted(decision.expert_scores.items(), key=lambda kv: (-kv[1], kv[0]))
        return [n for n, s in ranked if s >= floor and n not in used]

    def _final_output(self, prompt, decision, tried, floor, base_signals, forced=False) -> MoEOutput:
        return expert_output(prompt, decision, tried, floor, base_signals, self.base.tokenizer,
                             self.config.integrator, forced=forced)  # fmt: skip

    def expert_confidence(self, answer: ExpertAnswer) -> float:
        """The answering experts' confidence in [0, 1]: the mean chosen-token log-probability of the
        answer, through each expert's own calibrator (fitted on its held-out questions when it was
        created; fine-tuned experts are overconfident) or ``exp`` when it has none, weighted."""
        lp = answer.signals.token_logprobs
        raw = float(lp.mean()) if len(lp) else -1e3
        total = 0.0
        for name, weight in answer.experts:
            calibrator = self._calibrator(name)
            value = float(calibrator(raw)) if calibrator is not None else math.exp(min(raw, 0.0))
            total += weight * min(max(value, 0.0), 1.0)
        return total

    def set_expert_calibrator(self, name: str, calibrator: Any) -> None:
        """Use ``calibrator`` (raw mean log-prob -> confidence) for expert ``name`` from now on, over the
        one its card holds; ``None`` goes back to the card's."""
        if calibrator is None:
            self._calibrator_overrides.pop(name, None)
        else:
            self._calibrator_overrides[name] = calibrator

    def _calibrator(self, name: str):
        if name in self._calibrator_overrides:
            return self._calibrator_overrides[name]
        if name not in self.experts:
            return None
        card = self.experts.card(name)
        key = (name, card.version)
        if key not in self._calibrators:
            from .uncertainty.calibration import Calibrator

            state = card.metrics.get("confidence_calibrator")
            self._calibrators[key] = Calibrator.from_dict(state) if state else None
        return self._calibrators[key]

    def _record_gaps(self, gaps: list[tuple[Any, RouteDecision, MoEOutput, str | None]]) -> None:
        if self.gaps is None or not gaps:
            return
        embeddings: list[Any] = [None] * len(gaps)
        try:
            embeddings = list(self.embed_queries([Query(p, signals=o.signals) for p, _, o, _ in gaps]))
        except (InvalidInputError, ImportError) as e:  # the gap is still worth recording without it
            logger.warning("gap queries recorded without embeddings: %s", e)
        for (prompt, decision, _, request_id), emb in zip(gaps, embeddings, strict=True):
            self.gaps.record_decision(Query(prompt).text, decision, embedding=emb, request_id=request_id)

    def embed_queries(self, queries: Sequence[Query]):
        """Query embeddings as the router matches them (:meth:`~adaptive_moe.routing.Router.embed`)."""
        return self.router.embed(list(queries))

    def close(self) -> None:
        """Unload every expert from the base (so other code can attach adapters to it) and close the gap
        ledger. The system can still be used afterwards: experts load again on demand."""
        with self.base.lock:
            self.pool.clear()
            for name in list(self.pool.extra_names):  # merged experts and candidates live in memory only
                self.pool.discard(name)
            if self.gaps is not None:
                self.gaps.close()
                self.gaps = None

    def __repr__(self) -> str:
        return (f"AdaptiveMoE(base={self.base.name!r}, experts={self.experts.names()}, "
                f"router={type(self.router).__name__}, integrator={self.config.integrator.strategy!r})")  # fmt: skip


#: router settings that say how expert matches are used (nothing fitted): a shipped router takes the user's
MATCH_SETTINGS = ("top_k", "min_match_score", "override_match_score", "term_match")


def _card_examples(card) -> list[str]:
    """What the router learns an expert from: its card's example questions, else its domain description."""
    return list(card.extra.get("example_questions") or []) or ([card.domain] if card.domain else [])


def _forced_decision(d: RouteDecision, experts: list[tuple[str, float]]) -> RouteDecision:
    names = ", ".join(n for n, _ in experts)
    return RouteDecision("expert", d.confidence, list(experts), reason=f"experts chosen by the caller: {names}",
                         expert_scores=d.expert_scores, mode=d.mode, raw_confidence=d.raw_confidence)  # fmt: skip


@contextlib.contextmanager
def _timed(timings: dict[str, float], key: str):
    t = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + (time.perf_counter() - t) * 1000
