"""Attach a PEFT adapter to the base model for a while, then restore the base exactly.

PEFT injects LoRA layers into the model's modules in place; ``unload()`` takes them out again without
merging, so the original weights (never modified) are back. The pool of experts builds on this; the
training and evaluation code use it directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelBusyError, ModelNotFoundError


@dataclass
class ModelState:
    """What training or adapter loading may change on a model, captured so it can be put back.

    ``quantized`` holds, per bitsandbytes 4-bit weight, its storage and quantization state by
    reference, and the state's fields: on CPU, bitsandbytes repacks 4-bit weights into another layout
    for inference and back for training, and the two layouts round differently, so the base would
    answer differently after a QLoRA run. Training replaces those tensors and fields rather than
    writing into them, so putting them back restores the base exactly.
    """

    training: bool
    requires_grad: dict[str, bool]
    use_cache: Any
    quantized: dict[str, tuple[Any, Any, dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def capture(cls, model) -> ModelState:
        """Record which parameters of ``model`` train and whether it is in training mode."""
        quantized = {
            name: (module.weight.data, module.weight.quant_state, dict(vars(module.weight.quant_state)))
            for name, module in model.named_modules()
            if getattr(getattr(module, "weight", None), "quant_state", None) is not None
        }
        return cls(
            training=model.training,
            requires_grad={n: p.requires_grad for n, p in model.named_parameters()},
            use_cache=getattr(model.config, "use_cache", None),
            quantized=quantized,
        )

    def restore(self, model) -> None:
        """Put back what :meth:`capture` recorded."""
        for name, param in model.named_parameters():
            param.requires_grad_(self.requires_grad.get(name, False))
        model.train(self.training)
        if self.use_cache is not None:
            model.config.use_cache = self.use_cache
        for name, module in model.named_modules():
            if name in self.quantized and getattr(module, "weight", None) is not None:
                data, quant_state, fields = self.quantized[name]
                vars(quant_state).clear()  # bitsandbytes rewrites the state's fields in place when it repacks
                vars(quant_state).update(fields)
                module.weight.data, module.weight.quant_state = data, quant_state


def check_adapter_folder(path: str | Path, allow_pickle: bool = False) -> Path:
    """An adapter folder must exist, hold ``adapter_config.json`` and safetensors weights (pickled
    ``adapter_model.bin`` only when ``allow_pickle``)."""
    path = Path(path)
    if not (path / "adapter_config.json").is_file():
        raise ModelNotFoundError(f"{str(path)!r} is not a PEFT adapter folder (no adapter_config.json)")
    if (path / "adapter_model.safetensors").is_file():
        return path
    if (path / "adapter_model.bin").is_file():
        if allow_pickle:
            return path
        raise ConfigError(
            f"adapter {str(path)!r} has only pickled weights (adapter_model.bin), which can run arbitrary code; "
            "convert them to safetensors, or set pool.allow_pickle: true for adapters you trust"
        )
    raise ModelNotFoundError(f"adapter folder {str(path)!r} holds no weights (adapter_model.safetensors)")


def ensure_no_pooled_adapters(base) -> None:
    """Training or attaching an adapter needs the plain base: refuse while a pool has experts loaded."""
    host = getattr(base, "adapter_host", None)
    if host is not None and host.slots:
        raise ModelBusyError(
            f"{len(host.slots)} experts are loaded on this base by an ExpertPool; call pool.clear() first"
        )


@contextlib.contextmanager
def attached_adapter(base, adapter_dir: str | Path, *, allow_pickle: bool = False) -> Iterator[Any]:
    """Within the block, ``base.model`` (and so ``base.generate_with_signals``) runs with the adapter;
    afterwards the base is exactly what it was. Yields the ``PeftModel``."""
    from peft import PeftModel

    adapter_dir = check_adapter_folder(adapter_dir, allow_pickle)
    with base.lock:
        ensure_no_pooled_adapters(base)
        state = ModelState.capture(base.model)
        peft_model = PeftModel.from_pretrained(base.model, str(adapter_dir), is_trainable=False)
        peft_model.eval()
        try:
            yield peft_model
        finally:
            peft_model.base_model.unload()
            state.restore(base.model)
