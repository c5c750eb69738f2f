"""Base-model loader: precision (fp32/fp16/bf16, int8/nf4 through bitsandbytes), device, freezing,
tokenizer set-up, and a fingerprint that covers the model's name, config and weights."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import threading
import warnings
from pathlib import Path
from typing import Any

import torch

from ..config import EMBEDDED_MODEL, GenerationConfig, ModelConfig
from ..errors import (
    ConfigError,
    InvalidInputError,
    MissingDependencyError,
    ModelNotFoundError,
    UnsupportedPrecisionError,
    missing_dependency,
)
from ..utils.io import memoized_sha256, sha256_file
from .generation import GenerationSignals, Prompt, encode_prompt_states, generate_with_signals

logger = logging.getLogger(__name__)

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Config keys that change with how a model was loaded or saved, not with what it is.
_VOLATILE_CONFIG_KEYS = {
    "transformers_version",
    "_name_or_path",
    "name_or_path",
    "dtype",
    "torch_dtype",
    "quantization_config",
    "use_cache",
    "_attn_implementation_autoset",
    "_commit_hash",
    "architectures",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
}
_MEMO_MIN_BYTES = 16 << 20


class ModelLock:
    """The base model's re-entrant lock, which also counts the threads waiting for it: the decoding engine
    (:mod:`adaptive_moe.model.engine`) takes it for each step and, between steps, lets the waiting threads
    have it first (a plain lock is not fair: the engine would take it back at once). Works with
    ``threading.Condition`` as an ``RLock`` does."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._count = threading.Lock()
        self.waiting = 0  # threads blocked in acquire()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """As ``RLock.acquire``."""
        if self._lock.acquire(False):  # free, or already this thread's
            return True
        if not blocking:
            return False
        with self._counted():
            return self._lock.acquire(True, timeout)

    def release(self) -> None:
        """As ``RLock.release``."""
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # what threading.Condition uses with a re-entrant lock (release every level while waiting, then restore)
    def _is_owned(self) -> bool:
        return self._lock._is_owned()

    def _release_save(self) -> Any:
        return self._lock._release_save()

    def _acquire_restore(self, state: Any) -> None:
        with self._counted():
            self._lock._acquire_restore(state)

    @contextlib.contextmanager
    def _counted(self):
        """Count this thread among the waiters for the block."""
        with self._count:
            self.waiting += 1
        try:
            yield
        finally:
            with self._count:
                self.waiting -= 1


class BaseModel:
    """A frozen causal language model with its tokenizer, ready for batched generation with signals.

    Attributes:
        model: the ``transformers`` model (all parameters frozen, eval mode).
        tokenizer: its tokenizer, with a pad token and left padding.
        fingerprint: hex digest over the model's name, architecture config and weights; adapters
            record it so they are only used on the base they were trained for.
        config: the :class:`~adaptive_moe.config.ModelConfig` it was loaded from.
        lock: re-entrant lock held by every call that runs or changes the model. Adapters live in the
            model's modules (PEFT injects them in place) and which one is active is shared state, so
            one thread at a time owns the model; generation and the expert pool both take this lock.
        engine: a :class:`~adaptive_moe.model.engine.DecodeEngine` (continuous batching) or None; with
            one, every thread's generation is decoded in its shared loop, the lock released while waiting.
    """

    def __init__(self, model, tokenizer, config: ModelConfig, fingerprint: str, name: str):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.fingerprint = fingerprint
        self.name = name
        self.lock = ModelLock()
        self.adapter_host = None  # set by the expert pool while adapters are injected (experts.host)
        self.engine = None  # a DecodeEngine while one decodes for every thread (model.engine; the server's)

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return next(self.model.parameters()).device

    @property
    def precision(self) -> str:
        """The precision the model was loaded at (``fp32``, ``fp16``, ``bf16``, ``int8``, ``nf4``)."""
        return self.config.precision

    @property
    def context_length(self) -> int | None:
        """Longest sequence the model accepts in tokens, when its config says."""
        cfg = self.model.config
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(cfg, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    @property
    def has_chat_template(self) -> bool:
        """Whether the tokenizer has a chat template (prompts are rendered with it)."""
        return bool(getattr(self.tokenizer, "chat_template", None))

    def num_parameters(self) -> int:
        """Number of parameters of the model."""
        return sum(p.numel() for p in self.model.parameters())

    def generate_with_signals(
        self,
        prompts: Prompt | list[Prompt],
        generation: GenerationConfig | None = None,
        *,
        generate_fn: Any = None,
        logits_processor: Any = None,
        streamer: Any = None,
        quotes: list[list[str]] | None = None,
        **overrides: Any,
    ) -> list[GenerationSignals]:
        """Generate for a batch of prompts in ONE ``generate`` pass each batch, returning per prompt the
        text, token ids, chosen-token log-probs, per-step entropies and the prompt's final hidden state.

        ``prompts``: a string, a chat conversation (list of ``{"role", "content"}`` dicts), or a list of
        either. ``generation`` defaults to :class:`GenerationConfig`; keyword overrides change single
        fields (``max_new_tokens=24``). Always returns a list, one entry per prompt.
        ``generate_fn``, ``logits_processor``, ``streamer`` and ``quotes`` are for integrators (see
        :func:`~adaptive_moe.model.generation.generate_with_signals`).
        """
        with self.lock:
            return generate_with_signals(self, prompts, generation, generate_fn=generate_fn,
                                         logits_processor=logits_processor, streamer=streamer, quotes=quotes,
                                         **overrides)  # fmt: skip

    def prompt_states(
        self, prompts: Any, generation: GenerationConfig | None = None, *, layers: int | None = None, **overrides: Any
    ) -> list:
        """The prompts' hidden states from one forward pass, without generating (what a ``pre``
        routing decision needs): a list of :class:`~adaptive_moe.model.generation.PromptStates`.
        ``layers``: run only the first that many decoder blocks (a shallow pass; None: all)."""
        return encode_prompt_states(self, prompts, generation, layers=layers, **overrides)

    def __repr__(self) -> str:
        return (
            f"BaseModel(name={self.name!r}, precision={self.precision!r}, device={str(self.device)!r}, "
            f"parameters={self.num_parameters():,}, fingerprint={self.fingerprint[:12]!r})"
        )


def load_base_model(config: ModelConfig | None = None, **overrides: Any) -> BaseModel:
    """Load the base model described by ``config`` (default: the embedded SmolLM2-135M-Instruct).

    Keyword overrides change single fields: ``load_base_model(precision="bf16")``.

    Raises:
        ConfigError: an invalid field (every one is listed).
        ModelNotFoundError: the folder or hub id does not exist, or the embedded model's package is
            not installed (the message gives the install command).
        UnsupportedPrecisionError: the precision cannot run on the device.
        MissingDependencyError: int8/nf4 without bitsandbytes.
    """
    config = ModelConfig() if config is None else config
    if overrides:
        config = ModelConfig.from_dict({**config.to_dict(), **overrides})
    config.validate()
    device = resolve_device(config.device)
    check_precision(config.precision, device)

    source, name, is_local = _resolve_source(config)
    kwargs: dict[str, Any] = {
        "revision": config.revision,
        "trust_remote_code": config.trust_remote_code,
        "local_files_only": config.local_files_only or is_local,
    }
    if is_local and not config.allow_pickle:
        _require_safetensors(Path(source))
    tokenizer = _load_tokenizer(source, kwargs)  # first: cheap, and fails fast on a broken folder
    model = _load_model(source, config, device, kwargs)
    model.requires_grad_(False)
    model.eval()
    _align_special_tokens(model, tokenizer)

    weight_files = _weight_files(source, is_local, config.revision)
    fingerprint = compute_fingerprint(name, model.config, weight_files, model)
    base = BaseModel(model, tokenizer, config, fingerprint, name)
    logger.info("loaded %r", base)
    return base


# -- device and precision -------------------------------------------------------------------------
def resolve_device(device: str) -> torch.device:
    """``auto`` becomes CUDA when present, else CPU; an unavailable device is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"model.device: {device!r} requested but CUDA is not available here; allowed: 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"model.device: {device!r} does not exist; {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(f"model.device: {device!r} requested but MPS is not available here; allowed: 'cpu'")
    return dev


def check_precision(precision: str, device: torch.device) -> None:
    """Raise when ``precision`` cannot run on ``device`` (or needs a package that is missing)."""
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UnsupportedPrecisionError(
            f"model.precision: 'bf16' is not supported by {torch.cuda.get_device_name(device)}; choose 'fp16' or 'fp32'"
        )
    if precision in ("int8", "nf4"):
        if device.type == "mps":
            raise UnsupportedPrecisionError(
                f"model.precision: {precision!r} (bitsandbytes) does not run on MPS; choose 'fp16', 'bf16' or 'fp32'"
            )
        import_bitsandbytes()


def import_bitsandbytes():
    """Import bitsandbytes lazily, silencing what it prints on CPU-only machines."""
    try:
        with (
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            import bitsandbytes
    except ImportError:
        raise missing_dependency("bitsandbytes", extra="quant", purpose="int8 / nf4 precision") from None
    for noisy in ("bitsandbytes", "bitsandbytes.cextension"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    return bitsandbytes


def _quantization_config(precision: str, device: torch.device):
    from transformers import BitsAndBytesConfig

    if precision == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute
    )


# -- sources and loading --------------------------------------------------------------------------
def _resolve_source(config: ModelConfig) -> tuple[str, str, bool]:
    """``(what to pass to from_pretrained, canonical name, is a local folder)``."""
    name = config.name_or_path
    if name == EMBEDDED_MODEL:
        from .bundled import embedded_checkpoint

        return str(embedded_checkpoint()), EMBEDDED_MODEL, True
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"model folder {name!r} has no config.json; it is not a Hugging Face model folder")
        return str(path), path.resolve().name, True
    if path.exists():
        raise ModelNotFoundError(f"model path {name!r} is a file; give the model's folder or a hub id")
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
    if looks_like_path:
        raise ModelNotFoundError(
            f"model folder {name!r} does not exist; give an existing folder, a Hugging Face model id, "
            f"or {EMBEDDED_MODEL!r}"
        )
    return name, name, False


def _require_safetensors(folder: Path) -> None:
    if any(folder.glob("*.safetensors")):
        return
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        raise ConfigError(
            f"model folder {str(folder)!r} holds only pickled weights (.bin/.pt), which can run arbitrary code "
            "when loaded; convert them to safetensors, or set model.allow_pickle: true for files you trust"
        )
    raise ModelNotFoundError(f"model folder {str(folder)!r} holds no weights (*.safetensors)")


def _load_model(source: str, config: ModelConfig, device: torch.device, kwargs: dict[str, Any]):
    from transformers import AutoModelForCausalLM

    load: dict[str, Any] = dict(kwargs)
    load["use_safetensors"] = None if config.allow_pickle else True
    if config.precision in _DTYPES:
        load["dtype"] = _DTYPES[config.precision]
    else:
        load["quantization_config"] = _quantization_config(config.precision, device)
        load["device_map"] = {"": device.index if device.type == "cuda" and device.index is not None else str(device)}
        load["dtype"] = torch.bfloat16 if device.type == "cpu" else torch.float16
    from safetensors import SafetensorError

    what = f"could not load model {config.name_or_path!r}"
    try:
        with _quiet_bitsandbytes(config.precision):
            model = AutoModelForCausalLM.from_pretrained(source, **load)
    except ImportError as e:
        raise MissingDependencyError(f"{what}: {_first_line(e)}") from None
    except OSError as e:
        if "safetensors" in str(e).lower() and not config.allow_pickle:
            raise ConfigError(
                f"{what}: it has no safetensors weights; pickled .bin weights can run arbitrary code when "
                "loaded, so set model.allow_pickle: true only for a model you trust"
            ) from None
        raise ModelNotFoundError(f"{what}: {_first_line(e)}") from None
    except SafetensorError as e:
        raise ConfigError(f"{what}: its safetensors weights are corrupt ({_first_line(e)})") from None
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise ConfigError(f"{what}: {_first_line(e)}") from None
    if "device_map" not in load:
        model.to(device)
    return model


@contextlib.contextmanager
def _quiet_bitsandbytes(precision: str):
    if precision not in ("int8", "nf4"):
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="bitsandbytes")
        warnings.filterwarnings("ignore", message=".*bitsandbytes.*")
        yield


def _load_tokenizer(source: str, kwargs: dict[str, Any]):
    from transformers import AutoTokenizer

    what = f"could not load the tokenizer of {source!r}"
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except ImportError as e:
        raise MissingDependencyError(f"{what}: {_first_line(e)}") from None
    except OSError as e:
        raise ModelNotFoundError(f"{what}: {_first_line(e)}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{what}: {_first_line(e)}") from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise InvalidInputError(f"tokenizer of {source!r} has neither a pad nor an end-of-sequence token")
        # The pad token is then the EOS: training code must build labels from the attention mask,
        # not by masking pad ids, or the model never learns to stop.
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def _align_special_tokens(model, tokenizer) -> None:
    """Generation must stop at the tokenizer's EOS (for chat models, the end-of-turn token)."""
    gen = model.generation_config
    eos = gen.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
        eos_ids.add(tokenizer.eos_token_id)
        gen.eos_token_id = sorted(eos_ids)
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


# -- fingerprint ----------------------------------------------------------------------------------
def _weight_files(source: str, is_local: bool, revision: str | None) -> list[Path]:
    folder: Path | None = Path(source) if is_local else None
    if folder is None:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(source, "config.json", revision=revision)
            folder = Path(cached).parent if isinstance(cached, str) else None
        except Exception as e:  # noqa: BLE001 - the fingerprint then falls back to in-memory weights
            logger.debug("could not locate cached files of %s: %s", source, e)
    if folder is None:
        return []
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    return files


def _file_digest(path: Path) -> str:
    """SHA-256 of a whole weights file; files over 16 MiB are remembered in the cache by (path, size,
    mtime), so a large checkpoint is read once, not on every load."""
    if path.stat().st_size <= _MEMO_MIN_BYTES:
        return sha256_file(path)
    from .bundled import digest_memo

    return memoized_sha256(path, digest_memo())


def compute_fingerprint(name: str, model_config, weight_files: list[Path], model=None) -> str:
    """Hex SHA-256 over the model's name, its architecture config and its weights.

    Weights are hashed from the checkpoint files, whole (so the fingerprint does not change with the
    load precision: an adapter trained on the fp32 base also fits the nf4 one); when no file is known
    (a model built in memory) the in-memory tensors are sampled instead.
    """
    h = hashlib.sha256()
    h.update(name.encode())
    cfg = {k: v for k, v in model_config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    if weight_files:
        for path in weight_files:
            h.update(f"{path.name}:{_file_digest(path)}".encode())
    elif model is not None:
        for key, tensor in sorted(model.state_dict().items()):
            flat = tensor.detach().reshape(-1)
            idx = torch.linspace(0, flat.numel() - 1, steps=min(flat.numel(), 256)).long()
            h.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            h.update(flat[idx].to("cpu", torch.float32).numpy().tobytes())
    return h.hexdigest()
