"""Experts: the base class users extend, and the default LoRA expert.

An expert says what it covers (its :class:`ExpertCard`), how it is made ready on a base model
(:meth:`Expert.load`, called by the pool on a miss) and how it generates (:meth:`Expert.generate`).
Subclass :class:`LoRAExpert` to change prompt formatting or generation settings; subclass
:class:`Expert` for a different kind of expert altogether, and register it with
:func:`register_expert_kind` so a registry can store and load it.
"""

from __future__ import annotations

import json
import logging
import math
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from ..config import GenerationConfig
from ..errors import (
    AdaptiveMoEError,
    CorruptExpertError,
    IncompatibleExpertError,
    ModelBusyError,
)
from ..model.adapters import check_adapter_folder
from ..model.generation import Prompt, normalize_prompts
from ..utils.registry import Registry
from .card import ExpertCard
from .host import AdapterHost

logger = logging.getLogger(__name__)

SAFE_WEIGHTS = "adapter_model.safetensors"
PICKLED_WEIGHTS = "adapter_model.bin"


class Expert(ABC):
    """An expert the router can send queries to.

    Subclasses set ``kind`` (the name stored on the card) and implement :meth:`load`,
    :meth:`unload` and :meth:`generate`. The pool calls :meth:`check` and :meth:`load` on a miss and
    :meth:`unload` on eviction, always holding ``base.lock``.
    """

    kind: ClassVar[str] = ""

    def __init__(self, card: ExpertCard, path: str | Path | None = None) -> None:
        self.card = card
        self.path = Path(path) if path is not None else None
        self.base = None

    @property
    def name(self) -> str:
        """The expert's registered name."""
        return self.card.name

    @property
    def domain(self) -> str:
        """What the expert covers, in words."""
        return self.card.domain

    @property
    def version(self) -> int:
        """The registry version of this expert."""
        return self.card.version

    @property
    def is_loaded(self) -> bool:
        """Whether the expert is loaded on a base model."""
        return self.base is not None

    @property
    def resident_bytes(self) -> int:
        """Memory the loaded expert holds (0 when it shares everything with the base)."""
        return 0

    def estimated_bytes(self) -> int:
        """Memory the expert will hold once loaded (the pool makes room for it before loading)."""
        return 0

    # -- lifecycle (called by the pool) ------------------------------------------------------------
    def check(self, base) -> None:
        """Raise :class:`IncompatibleExpertError` when the expert cannot run on ``base``."""
        fp = self.card.base_fingerprint
        if fp is not None and fp != base.fingerprint:
            raise IncompatibleExpertError(
                f"expert {self.name!r} was made for base {self.card.base_name or '?'} (fingerprint {fp[:12]}), "
                f"not for the loaded {base.name} (fingerprint {base.fingerprint[:12]})"
            )

    def load(self, base, take_over: Expert | None = None) -> None:
        """Make the expert ready on ``base``. ``take_over`` is an expert being evicted at the same time
        whose resources this one may reuse (hot-swap); leave it alone if they do not fit."""
        self.base = base

    def unload(self) -> None:
        """Release what :meth:`load` took."""
        self.base = None

    # -- generation ------------------------------------------------------------------------------------
    def format_prompt(self, prompt: Prompt) -> Prompt:
        """The prompt this expert is given for a user prompt (a string or chat messages)."""
        return prompt

    def generation_config(self, generation: GenerationConfig) -> GenerationConfig:
        """Generation settings this expert uses, given the caller's."""
        return generation

    def read(self, prompt: Prompt) -> tuple[Prompt, list[dict[str, Any]]]:
        """:meth:`format_prompt`'s prompt and the passages of this expert's documents it puts in front of
        ``prompt`` (``source``, ``lines``, ``score``, ``text``, ``cite``); none for an expert that answers
        from memory."""
        return self.format_prompt(prompt), []

    @abstractmethod
    def generate(self, prompts: Any, generation: GenerationConfig | None = None, **overrides: Any) -> list:
        """Answer ``prompts`` (like :meth:`BaseModel.generate_with_signals`): a list of
        :class:`~adaptive_moe.model.generation.GenerationSignals`, one per prompt."""

    def prepare_request(
        self, prompts: Any, generation: GenerationConfig | None = None, **overrides: Any
    ) -> tuple[list[Prompt], GenerationConfig]:
        """What :meth:`generate` implementations start with: checks the expert is loaded, validates
        ``prompts`` (a string, chat messages, or a list of either) and applies :meth:`format_prompt`
        and :meth:`generation_config`. Returns ``(prompts, generation)``."""
        if self.base is None:
            raise ModelBusyError(f"expert {self.name!r} is not loaded; use it inside `with pool.acquire([...])`")
        gen = generation or GenerationConfig()
        if overrides:
            gen = gen.replace(**overrides)
        return [self.format_prompt(p) for p in normalize_prompts(prompts)], self.generation_config(gen)

    # -- persistence ---------------------------------------------------------------------------------
    def save_files(self, folder: Path) -> None:
        """Write the expert's own files (everything but ``expert.json``) into ``folder``."""
        return None  # a LoRA expert's files come in through ExpertRegistry.import_adapter

    @classmethod
    def from_folder(cls, folder: Path, card: ExpertCard, **options: Any) -> Expert:
        """Build the expert from its registry folder."""
        return cls(card, folder)

    def __repr__(self) -> str:
        state = "loaded" if self.is_loaded else "not loaded"
        return f"{type(self).__name__}({self.name!r}, v{self.version}, {state})"


class AdapterLayout(NamedTuple):
    """What a LoRA weights file targets, read from its safetensors header (no weights loaded)."""

    modules: dict[str, tuple[int, int, int]]  # module path in the base -> (rank, in_features, out_features)
    shapes: tuple[tuple[str, tuple[int, ...]], ...]  # every tensor, sorted: equal layouts can hot-swap
    nbytes: int


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _covers(targets: Any, module: str) -> bool:
    """PEFT's rule: a string target is a regular expression the whole module path must match; a list
    names module suffixes."""
    if isinstance(targets, str):
        try:
            return re.fullmatch(targets, module) is not None or module.endswith("." + targets) or module == targets
        except re.error:
            return False
    return any(module == t or module.endswith("." + t) for t in targets)


def check_lora_fields(config: Any, name: str, layout: AdapterLayout | None = None) -> None:
    """Raise :class:`CorruptExpertError` when a ``LoraConfig`` read from ``adapter_config.json`` holds
    values PEFT would only trip over when the adapter is attached (a rank that is not a positive whole
    number, no target modules, ...), or (with ``layout``, from the weights) targets other modules than
    the weights adapt, or another rank."""

    def bad(field: str, allowed: str) -> CorruptExpertError:
        value = getattr(config, field, None)
        return CorruptExpertError(f"expert {name!r}: adapter_config.json has {field}={value!r}; allowed: {allowed}")

    if not isinstance(config.r, int) or isinstance(config.r, bool) or config.r < 1:
        raise bad("r", "a whole number >= 1")
    if not _is_number(config.lora_alpha):
        raise bad("lora_alpha", "a finite number")
    if not _is_number(getattr(config, "lora_dropout", 0.0)) or not 0 <= config.lora_dropout < 1:
        raise bad("lora_dropout", "a number in [0, 1)")
    targets = config.target_modules
    if isinstance(targets, (set, frozenset, tuple)):
        targets = sorted(targets) if all(isinstance(t, str) for t in targets) else list(targets)
    if not (isinstance(targets, str) and targets) and not (
        isinstance(targets, list) and targets and all(isinstance(t, str) and t for t in targets)
    ):
        raise bad("target_modules", "a non-empty list of module names, or a regular expression")
    for field in ("fan_in_fan_out", "use_rslora", "inference_mode"):
        if not isinstance(getattr(config, field, False), bool):
            raise bad(field, "true or false")
    layers = getattr(config, "layers_to_transform", None)
    if layers is not None and not (
        (isinstance(layers, int) and not isinstance(layers, bool))
        or (isinstance(layers, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in layers))
    ):
        raise bad("layers_to_transform", "null, a layer number or a list of layer numbers")
    saved = getattr(config, "modules_to_save", None)
    if saved is not None and not (isinstance(saved, list) and all(isinstance(x, str) for x in saved)):
        raise bad("modules_to_save", "null or a list of module names")
    for field in ("rank_pattern", "alpha_pattern"):
        value = getattr(config, field, None) or {}
        if not isinstance(value, dict) or not all(isinstance(k, str) and _is_number(v) for k, v in value.items()):
            raise bad(field, "a mapping of module names to numbers")
    if layout is None:
        return
    missed = sorted(m for m in layout.modules if not _covers(targets, m))
    if missed:
        raise CorruptExpertError(
            f"expert {name!r}: adapter_config.json's target_modules {targets!r} do not cover {missed[0]!r} "
            f"(and {len(missed) - 1} more), which its weights adapt"
        )
    ranks = sorted({rank for rank, _, _ in layout.modules.values()})
    if ranks != [config.r] and not config.rank_pattern:
        raise CorruptExpertError(
            f"expert {name!r}: adapter_config.json has r={config.r} but its weights have rank {ranks}"
        )


def read_adapter_layout(weights: Path) -> AdapterLayout:
    """Parse a PEFT LoRA safetensors file's header: modules, ranks and shapes. Raises
    :class:`CorruptExpertError` for an unreadable or truncated file (safetensors checks that the
    header's offsets cover the file exactly) and :class:`IncompatibleExpertError` for
    weights that are not plain LoRA A/B matrices."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as fh:
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118 - not a dict
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types, turned into one here
        raise CorruptExpertError(f"cannot read adapter weights {str(weights)!r}: {e}") from None
    if not shapes:
        raise CorruptExpertError(f"adapter weights {str(weights)!r} hold no tensors")
    size = weights.stat().st_size
    a, b, other = {}, {}, []
    for key, shape in shapes.items():
        module, _, part = key.rpartition(".lora_")
        if part == "A.weight" and len(shape) == 2:
            a[module] = shape
        elif part == "B.weight" and len(shape) == 2:
            b[module] = shape
        else:
            other.append(key)
    if other:
        raise IncompatibleExpertError(
            f"adapter {str(weights.parent)!r} holds weights other than LoRA A/B matrices (e.g. {other[:3]}); "
            "only plain LoRA adapters (no modules_to_save, DoRA or embedding LoRA) can be pooled"
        )
    if set(a) != set(b):
        raise CorruptExpertError(f"adapter {str(weights.parent)!r} has LoRA A without B (or B without A) matrices")
    modules = {}
    for module, (rank, fan_in) in a.items():
        out, rank_b = b[module]
        if rank_b != rank:
            raise CorruptExpertError(f"adapter {str(weights.parent)!r}: ranks of A and B differ at {module}")
        modules[module.removeprefix("base_model.model.")] = (rank, fan_in, out)
    return AdapterLayout(modules, tuple(sorted(shapes.items())), size)


def check_layout_against_base(layout: AdapterLayout, base, name: str) -> None:
    """Every module the adapter targets exists in the base as a linear layer of the adapter's shapes.
    (PEFT would silently skip missing modules in mixed batches and answer from the base alone.)"""
    model = base.model
    if base.adapter_host is not None and base.adapter_host.peft_model is not None:
        model = base.adapter_host.peft_model.base_model.model
    problems = []
    for module, (_, fan_in, fan_out) in sorted(layout.modules.items()):
        try:
            target = model.get_submodule(module)
        except AttributeError:
            problems.append(f"{module}: not in the base")
            continue
        target = getattr(target, "base_layer", target)  # already wrapped by PEFT for another adapter
        shape = (getattr(target, "in_features", None), getattr(target, "out_features", None))
        if shape != (fan_in, fan_out):
            problems.append(f"{module}: adapter expects (in, out) = {(fan_in, fan_out)}, base has {shape}")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise IncompatibleExpertError(f"expert {name!r} does not fit base {base.name}: {shown}")


class LoRAExpert(Expert):
    """A PEFT LoRA adapter on the shared base model (the default kind).

    Override :meth:`format_prompt` or :meth:`generation_config` to change how it is prompted.
    """

    kind = "lora"
    #: the files of the expert's folder (besides ``expert.json``) that the registry stores
    files: ClassVar[tuple[str, ...]] = ("adapter_config.json", SAFE_WEIGHTS, "adaptive_moe_training.json")

    def __init__(self, card: ExpertCard, path: str | Path, *, allow_pickle: bool = False) -> None:
        super().__init__(card, path)
        self.allow_pickle = allow_pickle
        self.slot: str | None = None
        self._layout: AdapterLayout | None = None

    @classmethod
    def from_folder(cls, folder: Path, card: ExpertCard, **options: Any) -> LoRAExpert:
        """The expert stored in ``folder`` (a PEFT adapter folder) with its ``card``."""
        return cls(card, folder, allow_pickle=bool(options.get("allow_pickle", False)))

    @property
    def weights_file(self) -> Path:
        """The adapter's safetensors file."""
        check_adapter_folder(self.path, self.allow_pickle)
        safe = self.path / SAFE_WEIGHTS
        return safe if safe.is_file() else self.path / PICKLED_WEIGHTS

    @property
    def layout(self) -> AdapterLayout:
        """Module names and shapes of the adapter, read from the safetensors header."""
        if self._layout is None:
            weights = self.weights_file
            if weights.name != SAFE_WEIGHTS:
                raise IncompatibleExpertError(f"expert {self.name!r}: pickled weights cannot be pooled; import them")
            self._layout = read_adapter_layout(weights)
        return self._layout

    def peft_config(self):
        """The adapter's PEFT ``LoraConfig``."""
        from peft import LoraConfig, PeftConfig

        try:
            config = PeftConfig.from_pretrained(str(self.path))
        except (ValueError, TypeError, json.JSONDecodeError) as e:
            raise CorruptExpertError(f"unreadable adapter_config.json in {str(self.path)!r}: {e}") from None
        if not isinstance(config, LoraConfig):
            raise IncompatibleExpertError(
                f"expert {self.name!r} is a {type(config).__name__}; only LoRA adapters can be pooled"
            )
        if config.bias != "none" or getattr(config, "use_dora", False):
            raise IncompatibleExpertError(
                f"expert {self.name!r} uses bias={config.bias!r}, use_dora={config.use_dora}: disabling such an "
                "adapter does not give back the base model, so it cannot share the base; use plain LoRA"
            )
        check_lora_fields(config, self.name, self._checkable_layout())
        return config

    def _checkable_layout(self) -> AdapterLayout | None:
        """The weights' layout, when it can be read without unpickling (else the config alone is checked)."""
        if self._layout is not None:
            return self._layout
        try:
            return self.layout
        except AdaptiveMoEError:
            return None

    @property
    def resident_bytes(self) -> int:
        """Bytes of adapter weights this expert holds in memory now."""
        host = self.base.adapter_host if self.base is not None else None
        return host.slot_bytes(self.slot) if host is not None and self.slot else 0

    def estimated_bytes(self) -> int:
        """Bytes of adapter weights this expert will hold once loaded."""
        return self.layout.nbytes

    def check(self, base) -> None:
        """Raise :class:`IncompatibleExpertError` unless the adapter fits ``base`` (fingerprint, modules, shapes)."""
        super().check(base)
        self.peft_config()
        check_layout_against_base(self.layout, base, self.name)

    def can_swap_with(self, other: Expert) -> bool:
        """Whether ``other``'s slot can take this adapter by copying weights (same modules, shapes and settings)."""
        return isinstance(other, LoRAExpert) and other.slot is not None and other.layout.shapes == self.layout.shapes

    def load(self, base, take_over: Expert | None = None) -> None:
        """Load the adapter onto ``base``: into ``take_over``'s slot by a weight copy when they match, else
        into a new slot."""
        host = AdapterHost.of(base)
        if take_over is not None and self.can_swap_with(take_over):
            from safetensors.torch import load_file

            try:
                state = load_file(str(self.weights_file))
            except Exception as e:  # noqa: BLE001 - a corrupt file surfaces as one clear error
                raise CorruptExpertError(f"cannot read adapter weights of {self.name!r}: {e}") from None
            host.swap(take_over.slot, state, self.peft_config())
            self.slot, take_over.slot = take_over.slot, None
            take_over.base = None
        else:
            try:
                self.slot = host.add(self.path)
            except (OSError, RuntimeError, ValueError, TypeError, KeyError, AttributeError) as e:
                raise CorruptExpertError(f"cannot load adapter {self.name!r} from {str(self.path)!r}: {e}") from None
        self.base = base

    def save_files(self, folder: Path) -> None:
        """Copy the adapter folder's files (config, safetensors weights, training record)."""
        import shutil

        weights = self.weights_file
        if weights.name != SAFE_WEIGHTS:
            raise IncompatibleExpertError(f"expert {self.name!r} has pickled weights; use import_adapter to convert")
        for name in self.files:
            if (self.path / name).is_file():
                shutil.copy2(self.path / name, Path(folder) / name)

    def unload(self) -> None:
        """Remove the adapter from the base and free its weights."""
        if self.base is not None and self.slot is not None and self.base.adapter_host is not None:
            self.base.adapter_host.remove(self.slot)
        self.slot = None
        self.base = None

    def generate(self, prompts: Any, generation: GenerationConfig | None = None, **overrides: Any) -> list:
        """Answer with this expert's adapter slot active. Inside ``host.merged(expert.slot)`` (the merged
        fast path, ``integrator.merged_fast_path``) the merged weights answer and the adapter is not
        added a second time."""
        prompts, gen = self.prepare_request(prompts, generation, **overrides)
        with self.base.adapter_host.activated(self.slot):
            return self.base.generate_with_signals(prompts, gen)


EXPERT_KINDS: Registry[type[Expert]] = Registry("expert kind", Expert, key="kind")
EXPERT_KINDS.register(LoRAExpert)


def register_expert_kind(cls: type[Expert], *, overwrite: bool = False) -> type[Expert]:
    """Register an :class:`Expert` subclass under its ``kind`` so registries can load it (usable as a
    class decorator); see :meth:`~adaptive_moe.utils.registry.Registry.register`."""
    return EXPERT_KINDS.register(cls, overwrite=overwrite)


def expert_class(kind: str) -> type[Expert]:
    """The expert class registered for ``kind``."""
    return EXPERT_KINDS.get(kind)
