"""The one owner of the PEFT adapters injected into a base model.

PEFT puts LoRA layers into the model's modules in place, and which adapter is active is state shared by
every caller of the model. The host keeps that state safe:

- adapters live in named *slots* (``"slot3"``), all **disabled** except inside :meth:`activated`, so
  the base route (``base.generate_with_signals`` outside an activation) is exactly the base model;
- every change and every activation holds ``base.lock``;
- a slot can be refilled with another adapter of the same shapes by copying weights into it
  (hot-swap), far cheaper than building modules anew;
- when the last slot goes, the LoRA layers are taken out (``unload``) and the model is its plain self.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import IncompatibleExpertError, ModelBusyError
from ..model.adapters import ModelState

logger = logging.getLogger(__name__)

BASE_ROW = "__base__"  # PEFT's name for "no adapter" in a mixed batch


class AdapterHost:
    """Adapter slots on one base model. Get it with :meth:`of`; the expert pool is its usual user."""

    def __init__(self, base) -> None:
        self.base = base
        self.peft_model = None
        self._state: ModelState | None = None
        self._slot_bytes: dict[str, int] = {}
        self._params: dict[str, dict[str, Any]] = {}  # slot -> {name as saved in an adapter file: parameter}
        self._layers: dict[str, list[Any]] = {}  # slot -> its LoRA layers (for the scaling)
        self._active: tuple[str, ...] | None = None
        self._ids = itertools.count()

    @classmethod
    def of(cls, base) -> AdapterHost:
        """The host of ``base``, created on first use."""
        with base.lock:
            if base.adapter_host is None:
                base.adapter_host = cls(base)
            return base.adapter_host

    @property
    def slots(self) -> list[str]:
        return list(self._slot_bytes)

    def slot_bytes(self, slot: str) -> int:
        return self._slot_bytes.get(slot, 0)

    @property
    def resident_bytes(self) -> int:
        return sum(self._slot_bytes.values())

    # -- loading -----------------------------------------------------------------------------------
    def add(self, folder: str | Path) -> str:
        """Load the PEFT adapter in ``folder`` into a new slot; returns the slot's name."""
        from peft import PeftModel

        with self.base.lock:
            slot = f"slot{next(self._ids)}"
            if self.peft_model is None:
                self._state = ModelState.capture(self.base.model)
                self.peft_model = PeftModel.from_pretrained(
                    self.base.model, str(folder), adapter_name=slot, is_trainable=False, low_cpu_mem_usage=True
                )
            else:
                self.peft_model.load_adapter(str(folder), adapter_name=slot, is_trainable=False, low_cpu_mem_usage=True)
            self._freeze()
            self._index(slot)
            return slot

    def swap(self, slot: str, state_dict: dict[str, Any], config) -> None:
        """Copy the weights of another adapter of the same shapes into ``slot`` (hot-swap)."""
        from peft.utils.hotswap import hotswap_adapter_from_state_dict

        if slot not in self._slot_bytes:
            raise ModelBusyError(f"no adapter slot {slot!r} to swap into; slots: {self.slots}")
        with self.base.lock:
            if self._fast_swap(slot, state_dict, config):
                return
            mapped = {_slot_key(k, slot): v for k, v in state_dict.items()}
            try:
                hotswap_adapter_from_state_dict(self.peft_model, mapped, slot, config)
            except (RuntimeError, ValueError) as e:
                raise IncompatibleExpertError(f"adapter cannot be swapped into slot {slot!r}: {e}") from None
            # weights copied in place: same modules, still frozen, still disabled; nothing else to redo

    def remove(self, slot: str) -> None:
        """Delete a slot and release its memory; the last slot takes the LoRA layers out entirely."""
        with self.base.lock:
            if slot not in self._slot_bytes:
                return
            del self._slot_bytes[slot]
            self._params.pop(slot, None)
            self._layers.pop(slot, None)
            self._active = None
            if not self._slot_bytes:
                self.peft_model.base_model.unload()  # original modules back, adapter weights dropped
                self._state.restore(self.base.model)
                self.peft_model = None
                self.base.adapter_host = None
                return
            # PEFT warns when the active adapter is deleted and activates another: make a survivor active first
            if slot in (self.peft_model.base_model.active_adapters or []):
                self.peft_model.base_model.set_adapter(next(iter(self._slot_bytes)), inference_mode=True)
            self.peft_model.delete_adapter(slot)
            self._disable()

    # -- use -----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def activated(self, slots: str | Sequence[str]) -> Iterator[Any]:
        """Within the block the model runs with ``slots`` active (their outputs summed when several);
        afterwards every adapter is disabled again. Holds ``base.lock`` throughout. Yields the PeftModel."""
        slots = (slots,) if isinstance(slots, str) else tuple(slots)
        missing = [s for s in slots if s not in self._slot_bytes]
        if missing or not slots:
            raise ModelBusyError(f"adapter slots {missing or slots} are not loaded; loaded: {self.slots}")
        with self.base.lock:
            if self._active != slots:
                self.peft_model.base_model.set_adapter(list(slots) if len(slots) > 1 else slots[0], inference_mode=True)
                self._active = slots
            self.peft_model.base_model.enable_adapter_layers()
            try:
                yield self.peft_model
            finally:
                self._disable()

    @contextlib.contextmanager
    def mixed(self, row_slots: Sequence[str]) -> Iterator[Any]:
        """Within the block, yields a ``generate`` whose batch row ``i`` runs with adapter
        ``row_slots[i]`` (``"__base__"``: no adapter), through PEFT's mixed-batch inference
        (``adapter_names=``): one forward pass serves several experts. Holds ``base.lock``."""
        import functools

        wanted = {s for s in row_slots if s != BASE_ROW}
        missing = sorted(wanted - set(self._slot_bytes))
        if missing or not row_slots:
            raise ModelBusyError(f"adapter slots {missing or list(row_slots)} are not loaded; loaded: {self.slots}")
        with self.base.lock:
            self.peft_model.base_model.enable_adapter_layers()
            try:
                yield functools.partial(self.peft_model.generate, adapter_names=list(row_slots))
            finally:
                self._disable()

    def merge_to_folder(self, slots: Sequence[str], weights: Sequence[float], folder: str | Path) -> Path:
        """Write the weighted merge of loaded ``slots`` as a plain PEFT adapter folder (PEFT's
        ``add_weighted_adapter`` with ``combination_type="cat"``: the merged update is exactly
        ``sum_i w_i * delta_W_i``, of rank ``sum_i r_i``). The slots are left as they were."""
        import shutil
        import tempfile

        missing = [s for s in slots if s not in self._slot_bytes]
        if missing or not slots:
            raise ModelBusyError(f"adapter slots {missing or list(slots)} are not loaded; loaded: {self.slots}")
        folder = Path(folder)
        with self.base.lock, tempfile.TemporaryDirectory(prefix="adaptive_moe_merge_", dir=folder.parent) as tmp:
            name = f"merge{next(self._ids)}"
            model = self.peft_model
            model.add_weighted_adapter(list(slots), [float(w) for w in weights], adapter_name=name,
                                       combination_type="cat")  # fmt: skip
            try:
                model.save_pretrained(tmp, selected_adapters=[name], safe_serialization=True)
            finally:
                if name in (model.base_model.active_adapters or []):
                    model.base_model.set_adapter(slots[0], inference_mode=True)
                model.delete_adapter(name)
                self._active = None
                self._disable()
            shutil.move(str(Path(tmp) / name), str(folder))  # PEFT writes a named adapter into a subfolder
        return folder

    def _disable(self) -> None:
        self.peft_model.base_model.disable_adapter_layers()

    def _freeze(self) -> None:
        """After a new slot is built: its weights frozen, its modules in eval mode, every adapter disabled."""
        for p in self.peft_model.parameters():
            p.requires_grad_(False)
        self.peft_model.eval()
        self._active = None
        self._disable()

    def _index(self, slot: str) -> None:
        """Remember the slot's parameters by their name in a saved adapter file, its LoRA layers, its bytes."""
        marker = f".{slot}."
        params = {n.replace(marker, "."): p for n, p in self.peft_model.named_parameters() if marker in n}
        layers = [
            m for m in self.peft_model.modules() if isinstance(getattr(m, "scaling", None), dict) and slot in m.scaling
        ]
        self._params[slot], self._layers[slot] = params, layers
        self._slot_bytes[slot] = sum(p.numel() * p.element_size() for p in params.values())

    @torch.no_grad()
    def _fast_swap(self, slot: str, state_dict: dict[str, Any], config) -> bool:
        """Copy straight into the slot's remembered parameters when the new adapter has exactly its
        tensors and one rank and alpha (the common case); otherwise let PEFT's hot-swap handle it."""
        params = self._params.get(slot, {})
        if (set(state_dict) != set(params) or config.rank_pattern or config.alpha_pattern
                or any(params[k].shape != v.shape for k, v in state_dict.items())):  # fmt: skip
            return False
        for key, value in state_dict.items():
            params[key].copy_(value)
        scaling = config.lora_alpha / (math.sqrt(config.r) if config.use_rslora else config.r)
        for layer in self._layers[slot]:
            layer.scaling[slot] = scaling
        return True


def _slot_key(key: str, slot: str) -> str:
    """``...q_proj.lora_A.weight`` (as saved) -> ``...q_proj.lora_A.<slot>.weight`` (as in the model)."""
    head, _, leaf = key.rpartition(".")
    return f"{head}.{slot}.{leaf}"
