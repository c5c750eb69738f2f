"""The one owner of the PEFT adapters injected into a base model.

PEFT puts LoRA layers into the model's modules in place, and which adapter is active is state shared by
every caller of the model. The host keeps that state safe:

- adapters live in named *slots* (``"slot3"``), all **disabled** except inside :meth:`activated`, so
  the base route (``base.generate_with_signals`` outside an activation) is exactly the base model;
- every change and every activation holds ``base.lock``;
- a slot can be refilled with another adapter of the same shapes by copying weights into it
  (hot-swap), far cheaper than building modules anew;
- when the last slot goes, the LoRA layers are taken out (``unload``) and the model is its plain self;
- a single slot can also run *merged* (:meth:`merged`): its update ``scaling * B @ A`` added into a copy
  of each adapted weight, which is swapped into the base layer for the block and the original tensor
  object put back afterwards (never subtracted: ``W + d - d != W`` in floating point). An unmerged
  LoRA adds a second matmul per adapted layer (about 1.2x the base's generation time for r=16 on every
  projection); merged, the expert runs at the base's speed, at the memory cost of the cached copies.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import IncompatibleExpertError, InvalidInputError, ModelBusyError
from ..model.adapters import ModelState
from ..model.generation import adapter_rows

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
        self._active: tuple[str, ...] | None = None  # what PEFT's set_adapter was last given
        self._live: tuple[str, ...] | None = None  # slots running inside an enclosing activated() / merged()
        self._live_merged = False  # ... and whether that is a merged slot (its weights swapped in)
        # slot -> [(base layer, merged weight)], most recently used last; see merged()
        self._merged: OrderedDict[str, list[tuple[Any, torch.nn.Parameter]]] = OrderedDict()
        self.merges = 0  # merged weight sets computed (misses of merged()'s cache)
        self.merge_hits = 0  # merged() blocks served from the cache
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
        """Names of the adapter slots on the base."""
        return list(self._slot_bytes)

    def slot_bytes(self, slot: str) -> int:
        """Bytes of adapter weights in ``slot``."""
        return self._slot_bytes.get(slot, 0)

    @property
    def live_slots(self) -> tuple[str, ...] | None:
        """The slots an enclosing :meth:`activated` / :meth:`merged` block switched the model to (None
        outside one, and inside one that only marks its thread's rows for the decoding engine)."""
        return self._live

    @property
    def resident_bytes(self) -> int:
        """Bytes of adapter weights in every slot."""
        return sum(self._slot_bytes.values())

    @property
    def merged_bytes(self) -> int:
        """Memory held by cached merged weights (:meth:`merged`): one copy of every adapted weight, per
        cached slot, in the weight's dtype."""
        entries = tuple(self._merged.values())  # a snapshot: read without the lock (pool stats)
        return sum(w.numel() * w.element_size() for weights in entries for _, w in weights)

    @property
    def merged_slots(self) -> list[str]:
        """Slots whose merged weights are cached, least recently used first."""
        return list(self._merged)

    def drop_merged(self, slot: str | None = None) -> None:
        """Free the cached merged weights of ``slot`` (``None``: of every slot)."""
        with self.base.lock:
            if slot is None:
                self._merged.clear()
            else:
                self._merged.pop(slot, None)

    # -- loading -----------------------------------------------------------------------------------
    def add(self, folder: str | Path) -> str:
        """Load the PEFT adapter in ``folder`` into a new slot; returns the slot's name."""
        from peft import PeftModel

        with self.base.lock:
            self._check_not_merged("load an adapter")
            slot = f"slot{next(self._ids)}"
            if self.peft_model is None:
                self._state = ModelState.capture(self.base.model)
                try:
                    self.peft_model = PeftModel.from_pretrained(
                        self.base.model, str(folder), adapter_name=slot, is_trainable=False, low_cpu_mem_usage=True
                    )
                except BaseException:
                    self._undo_first_load()
                    raise
            else:
                try:
                    self.peft_model.load_adapter(
                        str(folder), adapter_name=slot, is_trainable=False, low_cpu_mem_usage=True
                    )
                except BaseException:
                    if slot in self.peft_model.peft_config:  # half-attached: take it out again
                        with contextlib.suppress(Exception):
                            self.peft_model.delete_adapter(slot)
                    self._disable()
                    raise
            self._freeze()
            self._index(slot)
            return slot

    def _undo_first_load(self) -> None:
        """After a failed first load: the base's own modules back (PEFT may have wrapped some before it
        failed), and no host left on the base."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        model = self.base.model
        for name, module in list(model.named_modules()):
            if isinstance(module, BaseTunerLayer) and hasattr(module, "get_base_layer"):
                parent_name, _, child = name.rpartition(".")
                parent = model.get_submodule(parent_name) if parent_name else model
                setattr(parent, child, module.get_base_layer())
        if hasattr(model, "peft_config"):
            with contextlib.suppress(AttributeError):
                del model.peft_config
        self._state.restore(model)
        self.peft_model = None
        if not self._slot_bytes:
            self.base.adapter_host = None

    def swap(self, slot: str, state_dict: dict[str, Any], config) -> None:
        """Copy the weights of another adapter of the same shapes into ``slot`` (hot-swap)."""
        from peft.utils.hotswap import hotswap_adapter_from_state_dict

        if slot not in self._slot_bytes:
            raise ModelBusyError(f"no adapter slot {slot!r} to swap into; slots: {self.slots}")
        with self.base.lock:
            self._check_not_merged("swap an adapter")
            self._merged.pop(slot, None)  # merged from the old weights
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
            self._check_not_merged("remove an adapter")
            del self._slot_bytes[slot]
            self._merged.pop(slot, None)
            self._params.pop(slot, None)
            self._layers.pop(slot, None)
            self._active = None
            if not self._slot_bytes:
                self._merged.clear()
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
        afterwards every adapter is disabled again (or the enclosing block's adapters are back). Holds
        ``base.lock`` throughout. Yields the PeftModel.

        Inside a block that already runs the same slots (an enclosing :meth:`activated`, or
        :meth:`merged` of that one slot), it changes nothing: a merged slot is not added twice."""
        slots = (slots,) if isinstance(slots, str) else tuple(slots)
        with self.base.lock:
            self._require(slots)
            if self._live == slots:
                yield self.peft_model
                return
            if len(slots) == 1 and not self._live and getattr(self.base, "engine", None) is not None:
                # the decoding engine runs this thread's rows with the slot, next to other threads' rows
                with adapter_rows(slots[0]):
                    yield self.peft_model
                return
            self._check_not_merged(f"activate adapter slots {list(slots)}")
            previous = self._live
            self._set_active(slots)
            self.peft_model.base_model.enable_adapter_layers()
            self._live = slots
            try:
                yield self.peft_model
            finally:
                self._live = previous
                self._resume()

    @contextlib.contextmanager
    def merged(self, slot: str, keep: int = 1) -> Iterator[Any]:
        """Within the block the model runs with ``slot``'s LoRA merged into its weights: the same
        answers as :meth:`activated` (up to float rounding) at the base model's speed. Holds
        ``base.lock`` throughout. Yields the PeftModel.

        Every base layer the slot adapts gets a new weight tensor ``W + scaling * B @ A`` (PEFT's
        ``get_delta_weight``, so ``fan_in_fan_out`` layers such as GPT-2's ``Conv1D`` are transposed
        right), computed in fp32 and stored in the weight's dtype; every adapter layer is disabled,
        so the LoRA path is not added on top. On exit the original weight objects are put back, so
        the base is exactly what it was (nothing is subtracted).

        Memory: the merged weights of the ``keep`` most recently merged slots stay cached (one extra
        copy of each adapted weight per slot; see :attr:`merged_bytes`), so a hot expert pays the
        merge once. A slot's entry is dropped when it is hot-swapped or removed, and all of them when
        the host unloads.

        A slot whose base layers are quantized (bitsandbytes int8 / nf4) cannot be merged into a
        float copy: the block then runs it unmerged, as :meth:`activated` does (logged at debug level).

        Loading, swapping or removing adapters, or activating other slots, inside the block raises
        :class:`ModelBusyError`."""
        if keep < 1:
            raise InvalidInputError(f"merged(keep={keep}): keep must be at least 1")
        with self.base.lock:
            self._require((slot,))
            if self._live == (slot,):  # already running in an enclosing block
                yield self.peft_model
                return
            if getattr(self.base, "engine", None) is not None:  # shared forwards: the slot's rows run unmerged
                with self.activated(slot) as model:
                    yield model
                return
            self._check_not_merged(f"merge adapter slot {slot!r}")
            weights = self._merged_weights(slot, keep)
            if weights is None:
                with self.activated(slot) as model:
                    yield model
                return
            previous, swapped = self._live, []
            self._disable()
            try:
                for module, weight in weights:
                    swapped.append((module, module.weight))
                    module.weight = weight
                self._live, self._live_merged = (slot,), True
                yield self.peft_model
            finally:
                for module, original in reversed(swapped):
                    module.weight = original  # the very tensor object the base had
                self._live, self._live_merged = previous, False
                self._resume()

    @contextlib.contextmanager
    def mixed(self, row_slots: Sequence[str]) -> Iterator[Any]:
        """Within the block, yields a ``generate`` whose batch row ``i`` runs with adapter
        ``row_slots[i]`` (``"__base__"``: no adapter), through PEFT's mixed-batch inference
        (``adapter_names=``): one forward pass serves several experts. Holds ``base.lock``."""
        import functools

        with self._mixed(row_slots):
            yield functools.partial(self.peft_model.generate, adapter_names=list(row_slots))

    @contextlib.contextmanager
    def mixed_forward(self, row_slots: Sequence[str]) -> Iterator[Any]:
        """As :meth:`mixed`, but yields the model's forward (the decoding engine's one step for every row it
        holds). Holds ``base.lock``."""
        import functools

        with self._mixed(row_slots):
            yield functools.partial(self.peft_model, adapter_names=list(row_slots))

    @contextlib.contextmanager
    def _mixed(self, row_slots: Sequence[str]) -> Iterator[None]:
        with self.base.lock:
            wanted = {s for s in row_slots if s != BASE_ROW}
            missing = sorted(wanted - set(self._slot_bytes))
            if missing or not row_slots:
                raise ModelBusyError(f"adapter slots {missing or list(row_slots)} are not loaded; loaded: {self.slots}")
            self._check_not_merged("run a mixed batch")
            self.peft_model.base_model.enable_adapter_layers()
            try:
                yield
            finally:
                self._resume()

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
            self._check_not_merged("merge adapters to a folder")
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
                self._resume()
            shutil.move(str(Path(tmp) / name), str(folder))  # PEFT writes a named adapter into a subfolder
        return folder

    def _disable(self) -> None:
        self.peft_model.base_model.disable_adapter_layers()

    def _require(self, slots: Sequence[str]) -> None:
        missing = [s for s in slots if s not in self._slot_bytes]
        if missing or not slots:
            raise ModelBusyError(f"adapter slots {missing or list(slots)} are not loaded; loaded: {self.slots}")

    def _set_active(self, slots: tuple[str, ...]) -> None:
        if self._active != slots:
            self.peft_model.base_model.set_adapter(list(slots) if len(slots) > 1 else slots[0], inference_mode=True)
            self._active = slots

    def _resume(self) -> None:
        """After an inner block: the enclosing unmerged activation's adapters enabled again, or (none,
        or a merged one, whose adapters stay off) every adapter disabled."""
        if self.peft_model is None:  # the last slot went inside the block: the layers are gone
            return
        if self._live and not self._live_merged and all(s in self._slot_bytes for s in self._live):
            self._set_active(self._live)
            self.peft_model.base_model.enable_adapter_layers()
        else:
            self._disable()

    def _check_not_merged(self, what: str) -> None:
        if self._live_merged:
            raise ModelBusyError(
                f"cannot {what} while adapter slot {self._live[0]!r} is merged into the base weights "
                "(inside AdapterHost.merged); leave that block first"
            )

    @torch.no_grad()
    def _merged_weights(self, slot: str, keep: int) -> list[tuple[Any, torch.nn.Parameter]] | None:
        """``[(base layer, merged weight)]`` for ``slot``, from the cache or computed (the oldest entries
        dropped first, so at most ``keep`` sets are held); ``None`` when a layer cannot be merged."""
        cached = self._merged.get(slot)
        if cached is not None:
            self._merged.move_to_end(slot)
            while len(self._merged) > keep:
                self._merged.popitem(last=False)
            self.merge_hits += 1
            return cached
        reason = _unmergeable(self._layers[slot])
        if reason is not None:
            logger.debug("adapter slot %s runs unmerged: %s", slot, reason)
            return None
        while len(self._merged) >= keep:
            self._merged.popitem(last=False)
        weights = []
        for layer in self._layers[slot]:
            module = layer.get_base_layer()
            weight = module.weight
            delta = layer.get_delta_weight(slot)  # (out, in), or (in, out) for fan_in_fan_out layers
            if delta.shape != weight.shape:
                logger.debug("adapter slot %s runs unmerged: delta %s does not fit weight %s",
                             slot, tuple(delta.shape), tuple(weight.shape))  # fmt: skip
                return None
            merged = (weight.float() + delta.float()).to(weight.dtype)
            weights.append((module, torch.nn.Parameter(merged, requires_grad=False)))
        self._merged[slot] = weights
        self.merges += 1
        return weights

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


def _unmergeable(layers: Sequence[Any]) -> str | None:
    """Why these LoRA layers cannot be merged into a float copy of their base weights (None: they can)."""
    for layer in layers:
        if not (hasattr(layer, "get_delta_weight") and hasattr(layer, "get_base_layer")):
            return f"{type(layer).__name__} has no delta weight"
        weight = getattr(layer.get_base_layer(), "weight", None)
        # bitsandbytes keeps int8 / nf4 weights in Parameter subclasses (Int8Params, Params4bit)
        if type(weight) is not torch.nn.Parameter or not weight.is_floating_point():
            kind = type(weight).__name__ + (f" of {weight.dtype}" if isinstance(weight, torch.Tensor) else "")
            return f"its base layer {type(layer.get_base_layer()).__name__} holds a {kind} (quantized)"
    return None


def _slot_key(key: str, slot: str) -> str:
    """``...q_proj.lora_A.weight`` (as saved) -> ``...q_proj.lora_A.<slot>.weight`` (as in the model)."""
    head, _, leaf = key.rpartition(".")
    return f"{head}.{slot}.{leaf}"
