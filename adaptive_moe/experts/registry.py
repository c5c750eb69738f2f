"""The on-disk registry of experts.

Layout (every expert version is a plain PEFT adapter folder plus its card)::

    <root>/<name>/v1/adapter_config.json
                    adapter_model.safetensors
                    expert.json
    <root>/<name>/v2/...

Every write goes to a hidden temporary folder beside its target and is renamed into place, so a crash
(even SIGKILL) leaves either the whole new version or nothing; hidden and unparseable entries are
ignored, so the registry always opens. Names are validated and cannot leave the root.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import (
    CorruptExpertError,
    InvalidInputError,
    ModelNotFoundError,
    OutputExistsError,
    UnknownNameError,
)
from ..model.adapters import check_adapter_folder
from ..utils.io import atomic_directory, sha256_file
from .card import CARD_FILE, ExpertCard, _now, validate_expert_name
from .expert import PICKLED_WEIGHTS, SAFE_WEIGHTS, Expert, LoRAExpert, expert_class, read_adapter_layout

logger = logging.getLogger(__name__)

_VERSION = re.compile(r"^v([1-9][0-9]{0,5})$")
_TRAINING_RECORD = "adaptive_moe_training.json"
_STALE_SECONDS = 3600


class ExpertRegistry:
    """Experts stored under one folder. Safe to share between threads; between processes every entry
    is written atomically (readers never see half an expert).

    Args:
        path: the registry folder (created if missing).
        allow_pickle: accept pickled ``adapter_model.bin`` weights on import (they are converted to
            safetensors on the way in; loading pickles can run arbitrary code, so this is off by default).
    """

    def __init__(self, path: str | Path, *, allow_pickle: bool = False) -> None:
        self.root = Path(path)
        if self.root.exists() and not self.root.is_dir():
            raise InvalidInputError(f"expert registry path {str(self.root)!r} is a file, not a folder")
        self.root.mkdir(parents=True, exist_ok=True)
        self.allow_pickle = allow_pickle
        self._lock = threading.RLock()
        self._versions: dict[str, tuple[int, tuple[int, ...]]] = {}  # name -> (folder mtime, versions)
        self._remove_stale_temporaries()

    # -- reading ---------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Names with at least one readable version, sorted."""
        return sorted(n for n in self._candidate_names() if self.versions(n))

    def versions(self, name: str) -> list[int]:
        """The versions stored for ``name``, ascending (empty when none)."""
        folder = self.root / validate_expert_name(name)
        try:
            stamp = folder.stat().st_mtime_ns  # a version added or removed changes the folder's mtime
        except OSError:
            return []
        cached = self._versions.get(name)
        if cached is not None and cached[0] == stamp:
            return list(cached[1])
        found = []
        for child in folder.iterdir():
            m = _VERSION.match(child.name)
            if m and (child / CARD_FILE).is_file():
                found.append(int(m.group(1)))
        if time.time_ns() - stamp > 2_000_000_000:  # coarse-mtime filesystems: trust only settled folders
            self._versions[name] = (stamp, tuple(sorted(found)))
        return sorted(found)

    def card(self, name: str, version: int | None = None) -> ExpertCard:
        """The card of ``name`` (latest version unless ``version``)."""
        return ExpertCard.load(self._folder(name, version))

    def get(self, name: str, version: int | None = None) -> Expert:
        """The expert ``name`` (latest version unless ``version``), built by the class its card's kind
        names; not loaded yet (the pool loads it)."""
        folder = self._folder(name, version)
        card = ExpertCard.load(folder)
        if card.name != name:
            raise CorruptExpertError(f"card in {str(folder)!r} names {card.name!r}, not {name!r}")
        return expert_class(card.kind).from_folder(folder, card, allow_pickle=self.allow_pickle)

    def list(self) -> list[ExpertCard]:
        """The latest card of every expert, sorted by name. Unreadable entries are logged and skipped."""
        cards = []
        for name in self.names():
            try:
                cards.append(self.card(name))
            except CorruptExpertError as e:
                logger.warning("skipping unreadable expert: %s", e)
        return cards

    def path_of(self, name: str, version: int | None = None) -> Path:
        """The folder of ``name`` (latest version unless ``version``)."""
        return self._folder(name, version)

    def __contains__(self, name: object) -> bool:
        try:
            return bool(self.versions(name))  # type: ignore[arg-type]
        except InvalidInputError:
            return False

    def __len__(self) -> int:
        return len(self.names())

    def __iter__(self):
        return iter(self.names())

    def __repr__(self) -> str:
        return f"ExpertRegistry({str(self.root)!r}, experts={self.names()})"

    # -- writing ---------------------------------------------------------------------------------------
    def import_adapter(
        self,
        adapter_dir: str | Path,
        name: str,
        domain: str = "",
        *,
        base=None,
        metrics: dict[str, Any] | None = None,
        new_version: bool = False,
        extra: dict[str, Any] | None = None,
        kind: str = LoRAExpert.kind,
    ) -> ExpertCard:
        """Add a PEFT LoRA adapter folder (made by :func:`train_lora` or by plain PEFT elsewhere) as
        expert ``name``.

        The weights are checked (readable, plain LoRA) and copied in with an ``expert.json`` card; a
        training record written by :func:`train_lora` fills the card's base fingerprint, LoRA settings
        and data provenance. With ``base``, the adapter is checked against it now (fingerprint, modules,
        shapes) and the card records that base. ``new_version=True`` adds a new version of an existing
        name (otherwise an existing name is an error). ``kind`` names a registered :class:`LoRAExpert`
        subclass that should load it (see :func:`register_expert_kind`).
        """
        validate_expert_name(name)
        cls = expert_class(kind)
        if not issubclass(cls, LoRAExpert):
            raise InvalidInputError(f"kind {kind!r} is a {cls.__name__}, not a LoRAExpert; use add() for other kinds")
        adapter_dir = check_adapter_folder(adapter_dir, self.allow_pickle)
        record = _read_training_record(adapter_dir)
        with tempfile.TemporaryDirectory(prefix=".import-", dir=self.root) as scratch:
            weights = adapter_dir / SAFE_WEIGHTS
            if not weights.is_file():
                weights = _pickle_to_safetensors(adapter_dir / PICKLED_WEIGHTS, Path(scratch) / SAFE_WEIGHTS)
            layout = read_adapter_layout(weights)
            config = _read_adapter_config(adapter_dir)
            card = ExpertCard(
                name=name,
                domain=domain,
                kind=kind,
                base_fingerprint=record.get("base_fingerprint"),
                base_name=record.get("base_name") or config.get("base_model_name_or_path"),
                lora={},  # summarised below, once the config is known to be sound
                data=record.get("data") or {},
                metrics=dict(metrics or {}),
                weights_sha256=sha256_file(weights),
                weights_bytes=weights.stat().st_size,
                extra=dict(extra or {}),
            )
            probe = cls(card, adapter_dir)
            probe._layout = layout
            if base is not None:
                probe.check(base)
                card.base_fingerprint, card.base_name = base.fingerprint, base.name
            else:
                probe.peft_config()  # LoRA, no bias, no DoRA, sound field values
            card.lora = record.get("lora") or _lora_summary(config, layout)

            def write(folder: Path) -> None:
                shutil.copy2(adapter_dir / "adapter_config.json", folder / "adapter_config.json")
                shutil.copy2(weights, folder / SAFE_WEIGHTS)
                for extra_file in cls.files:  # the training record, and a kind's own files (a passage index)
                    if extra_file not in ("adapter_config.json", SAFE_WEIGHTS) and (adapter_dir / extra_file).is_file():
                        shutil.copy2(adapter_dir / extra_file, folder / extra_file)

            return self._write(card, write, new_version)

    def add(self, expert: Expert, *, new_version: bool = False) -> ExpertCard:
        """Store an expert of any registered kind: its card and whatever :meth:`Expert.save_files`
        writes. (LoRA adapters usually come in through :meth:`import_adapter`.)"""
        if not isinstance(expert, Expert):
            raise InvalidInputError(f"add() takes an Expert, got {type(expert).__name__}")
        registered, cls = expert_class(expert.kind), type(expert).__name__
        if registered is not type(expert):  # it must load back as the same class
            raise InvalidInputError(
                f"{cls} has kind {expert.kind!r}, which is registered to {registered.__name__}; "
                f"give {cls} its own kind and call register_expert_kind({cls})"
            )
        card = ExpertCard.from_dict({**expert.card.to_dict(), "kind": expert.kind})
        return self._write(card, expert.save_files, new_version)

    def update_card(self, name: str, *, version: int | None = None, **changes: Any) -> ExpertCard:
        """Change fields of a stored card (``metrics=...``, ``domain=...``), written atomically.
        ``name``, ``version`` and ``kind`` cannot change."""
        fixed = {"name", "version", "kind"} & set(changes)
        if fixed:
            raise InvalidInputError(f"cannot change {sorted(fixed)} of a stored expert; add a new version instead")
        with self._lock:
            folder = self._folder(name, version)
            card = ExpertCard.from_dict({**ExpertCard.load(folder).to_dict(), **changes})
            card.save(folder)
            return card

    def remove(self, name: str, version: int | None = None) -> None:
        """Delete ``name`` (every version, or only ``version``). The entry disappears in one rename."""
        with self._lock:
            target = self._folder(name, version) if version is not None else self.root / validate_expert_name(name)
            if version is None and not self.versions(name):
                raise UnknownNameError("expert", name, self.names())
            trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=self.root))
            os.replace(target, trash / "entry")
            shutil.rmtree(trash, ignore_errors=True)
            parent = self.root / name
            if version is not None and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()

    def verify(self, name: str, version: int | None = None) -> ExpertCard:
        """Re-hash the weights of ``name`` and compare with the card; raises :class:`CorruptExpertError`."""
        folder = self._folder(name, version)
        card = ExpertCard.load(folder)
        weights = folder / SAFE_WEIGHTS
        if card.weights_sha256 is not None:
            if not weights.is_file() or sha256_file(weights) != card.weights_sha256:
                raise CorruptExpertError(f"weights of expert {name!r} v{card.version} do not match their card's hash")
            read_adapter_layout(weights)
        return card

    # -- internals -------------------------------------------------------------------------------------
    def _candidate_names(self) -> list[str]:
        out = []
        for child in self.root.iterdir():
            if child.name.startswith(".") or not child.is_dir():
                continue
            try:
                out.append(validate_expert_name(child.name))
            except InvalidInputError:
                logger.debug("ignoring %s in the expert registry: not an expert name", child)
        return out

    def _folder(self, name: str, version: int | None) -> Path:
        versions = self.versions(name)
        if not versions:
            raise UnknownNameError("expert", name, self.names())
        if version is None:
            version = versions[-1]
        elif version not in versions:
            raise UnknownNameError(f"version of expert {name!r}", f"v{version}", [f"v{v}" for v in versions])
        return self.root / name / f"v{version}"

    def _write(self, card: ExpertCard, write_files, new_version: bool) -> ExpertCard:
        with self._lock:
            existing = self.versions(card.name)
            if existing and not new_version:
                raise OutputExistsError(
                    f"expert {card.name!r} exists (v{existing[-1]}); pass new_version=True to add v{existing[-1] + 1}, "
                    "or remove it first"
                )
            version = (existing[-1] + 1) if existing else 1
            card = ExpertCard.from_dict({**card.to_dict(), "version": version, "created": _now()})
            target = self.root / card.name / f"v{card.version}"
            if target.exists():  # a version folder without a card: debris of an older crash
                shutil.rmtree(target)
            with atomic_directory(target) as tmp:
                write_files(tmp)
                card.save(tmp)
            logger.info("registered expert %s", card.summary())
            return card

    def _remove_stale_temporaries(self) -> None:
        """Temporary folders left by writers that crashed long ago (recent ones may be in use)."""
        now = time.time()
        for folder in [self.root, *(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))]:
            for child in folder.iterdir():
                if child.name.startswith(".") and child.is_dir():
                    try:
                        if now - child.stat().st_mtime > _STALE_SECONDS:
                            shutil.rmtree(child, ignore_errors=True)
                    except OSError:
                        pass


def _read_training_record(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / _TRAINING_RECORD
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        logger.warning("ignoring unreadable training record %s", path)
        return {}


def _lora_summary(config: dict[str, Any], layout) -> dict[str, Any]:
    targets = config.get("target_modules")
    return {
        "r": config.get("r"),
        "alpha": config.get("lora_alpha"),
        "target_modules": sorted(targets) if isinstance(targets, list) else targets,
        "modules": len(layout.modules),
    }


def _pickle_to_safetensors(source: Path, dest: Path) -> Path:
    """Pickled adapter weights (allowed by the user) -> a safetensors file; tensors only are unpickled."""
    import torch
    from safetensors.torch import save_file

    if not source.is_file():
        raise ModelNotFoundError(f"no adapter weights in {str(source.parent)!r}")
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - an unreadable pickle becomes one clear error
        raise CorruptExpertError(f"cannot read pickled adapter weights {str(source)!r}: {e}") from None
    save_file({k: v.contiguous() for k, v in state.items()}, str(dest))
    return dest


def _read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    """``adapter_config.json`` as a dict (:class:`CorruptExpertError` when it is not a JSON object)."""
    path = adapter_dir / "adapter_config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CorruptExpertError(f"unreadable adapter_config.json in {str(adapter_dir)!r}: {e}") from None
    if not isinstance(config, dict):
        raise CorruptExpertError(
            f"adapter_config.json in {str(adapter_dir)!r} holds a {type(config).__name__}, not a JSON object"
        )
    return config
