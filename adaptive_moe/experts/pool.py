"""The LRU pool: experts loaded on demand onto the one base model, evicted over capacity.

``with pool.acquire(["a", "b"]) as experts:`` makes the experts ready and marks them in use; an
expert in use or pinned is never evicted. On a miss the least recently used idle experts are evicted
until the new one fits (by count and by bytes); a LoRA expert of the same shapes as one being
evicted is copied into its slot (hot-swap) instead of building new modules. Every step holds
``base.lock``, which generation holds too, so the pool is safe to use from several threads.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from ..config import PoolConfig
from ..errors import InvalidInputError, ModelBusyError, UnknownNameError
from ..model.loading import BaseModel
from .card import validate_expert_name
from .expert import Expert
from .registry import ExpertRegistry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolStats:
    """Counters since the pool was made (subtract two snapshots for one call's share) and current memory.

    Attributes:
        hits, misses, evictions: acquisitions found resident, loaded, and experts evicted.
        load_ms: total milliseconds spent loading experts (checks included).
        resident_bytes: adapter weights held now.
        hotswaps: misses served by copying weights into an evicted expert's slot.
        overflows: loads that found no idle expert to evict (every resident one in use or pinned) and
            went over capacity until one was released.
        resident: experts loaded now, least recently used first.
        rss_bytes: resident memory of this process (None where the platform does not say).
        cuda_bytes: CUDA memory allocated by torch (None without CUDA).
        merged_bytes: memory held by the merged fast path's cached weights (one copy of each adapted
            weight per cached expert; ``integrator.merged_fast_path``).
    """

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    load_ms: float = 0.0
    resident_bytes: int = 0
    hotswaps: int = 0
    overflows: int = 0
    resident: tuple[str, ...] = ()
    rss_bytes: int | None = None
    cuda_bytes: int | None = None
    merged_bytes: int = 0

    @property
    def requests(self) -> int:
        """Hits plus misses."""
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float:
        """Hits over requests (0.0 before any request)."""
        return self.hits / self.requests if self.requests else 0.0

    def __sub__(self, earlier: PoolStats) -> PoolStats:
        """Counters between ``earlier`` and this snapshot; memory fields are this snapshot's."""
        counters = ("hits", "misses", "evictions", "load_ms", "hotswaps", "overflows")
        return PoolStats(**{f.name: (getattr(self, f.name) - getattr(earlier, f.name)) if f.name in counters
                            else getattr(self, f.name) for f in fields(self)})  # fmt: skip

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "hit_rate": self.hit_rate}


@dataclass
class _Entry:
    expert: Expert
    in_use: int = 0
    pinned: bool = False
    bytes: int = 0
    loaded_at: float = field(default_factory=time.monotonic)

    @property
    def evictable(self) -> bool:
        return not self.in_use and not self.pinned


class ExpertPool:
    """Experts from ``registry`` loaded onto ``base`` on demand.

    Args:
        base: the :class:`~adaptive_moe.model.loading.BaseModel` every expert shares.
        registry: an :class:`ExpertRegistry` or its folder.
        capacity: most experts resident at once (in-use experts may push it over briefly; see
            :attr:`PoolStats.overflows`).
        max_bytes: most bytes of expert weights resident at once (``None``: no limit).
        config: a :class:`~adaptive_moe.config.PoolConfig` instead of the two numbers.
    """

    def __init__(
        self,
        base: BaseModel,
        registry: ExpertRegistry | str | Path,
        capacity: int | None = None,
        max_bytes: int | None = None,
        *,
        config: PoolConfig | None = None,
    ) -> None:
        config = config or PoolConfig()
        config = PoolConfig.from_dict({**config.to_dict(),
                                       **({"capacity": capacity} if capacity is not None else {}),
                                       **({"max_bytes": max_bytes} if max_bytes is not None else {})})  # fmt: skip
        config.validate()
        self.base = base
        if not isinstance(registry, ExpertRegistry):
            registry = ExpertRegistry(registry, allow_pickle=config.allow_pickle)
        self.registry = registry
        self.capacity = config.capacity
        self.max_bytes = config.max_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._extra: dict[str, Expert] = {}  # experts added in memory, not from the registry
        self._counts = {"hits": 0, "misses": 0, "evictions": 0, "hotswaps": 0, "overflows": 0}
        self._load_ms = 0.0

    # -- the main entry point ----------------------------------------------------------------------
    @contextlib.contextmanager
    def acquire(self, names: str | Iterable[str]) -> Iterator[list[Expert]]:
        """Make ``names`` ready and hold them in use for the block; yields the experts in that order."""
        names = [names] if isinstance(names, str) else list(names)
        if not names:
            raise InvalidInputError("acquire() needs at least one expert name")
        if len(set(names)) > self.capacity:
            raise InvalidInputError(
                f"acquire() asked for {len(set(names))} experts at once; the capacity is {self.capacity}"
            )
        held: list[str] = []
        try:
            with self.base.lock:
                experts = []
                for name in names:
                    experts.append(self._ensure(name))
                    self._entries[name].in_use += 1
                    held.append(name)
            yield experts
        finally:
            with self.base.lock:
                for name in held:
                    entry = self._entries.get(name)
                    if entry is not None:
                        entry.in_use -= 1
                self._trim()

    def add(self, expert: Expert) -> None:
        """Make an in-memory expert (not stored in the registry) available to :meth:`acquire` by name."""
        if not isinstance(expert, Expert):
            raise InvalidInputError(f"add() takes an Expert, got {type(expert).__name__}")
        with self.base.lock:
            self._extra[expert.name] = expert

    def pin(self, name: str) -> None:
        """Load ``name`` if needed and keep it resident until :meth:`unpin`."""
        with self.base.lock:
            self._ensure(name)
            self._entries[name].pinned = True

    def unpin(self, name: str) -> None:
        """Let ``name`` be evicted again."""
        with self.base.lock:
            entry = self._entries.get(name)
            if entry is None:
                raise UnknownNameError("resident expert", name, self._entries)
            entry.pinned = False
            self._trim()

    def prefetch(self, names: str | Iterable[str]) -> None:
        """Load experts ahead of use (as far as capacity allows; the last named are kept)."""
        names = [names] if isinstance(names, str) else list(names)
        with self.base.lock:
            for name in names:
                self._ensure(name, count=False)
                self._trim()

    def evict(self, name: str) -> None:
        """Unload ``name`` now (an error while it is in use or pinned)."""
        with self.base.lock:
            entry = self._entries.get(name)
            if entry is None:
                raise UnknownNameError("resident expert", name, self._entries)
            if not entry.evictable:
                raise ModelBusyError(f"expert {name!r} is {'in use' if entry.in_use else 'pinned'}; cannot evict it")
            self._evict(name)

    def clear(self) -> None:
        """Unload every expert (an error if any is in use); pinned ones are unpinned first. Afterwards
        the base model holds no adapter layers at all."""
        with self.base.lock:
            busy = [n for n, e in self._entries.items() if e.in_use]
            if busy:
                raise ModelBusyError(f"experts {busy} are in use; cannot clear the pool")
            for name in list(self._entries):
                self._evict(name)

    # -- state -----------------------------------------------------------------------------------------
    @property
    def resident(self) -> list[str]:
        """Loaded experts, least recently used first."""
        return list(self._entries)

    @property
    def resident_bytes(self) -> int:
        """Bytes of adapter weights of the resident experts."""
        return sum(e.bytes for e in self._entries.values())

    @property
    def extra_names(self) -> list[str]:
        """Experts added in memory with :meth:`add` (not stored in the registry)."""
        return sorted(self._extra)

    def discard(self, name: str) -> None:
        """Forget an in-memory expert added with :meth:`add` (unloading it if resident and idle)."""
        with self.base.lock:
            if name in self._entries:
                self.evict(name)
            self._extra.pop(name, None)

    @property
    def stats(self) -> PoolStats:
        """A snapshot of the counters (subtract two snapshots for the events between them)."""
        host = self.base.adapter_host
        return PoolStats(**self._counts, load_ms=self._load_ms, resident_bytes=self.resident_bytes,
                         resident=tuple(self._entries), rss_bytes=process_rss_bytes(),
                         cuda_bytes=torch.cuda.memory_allocated() if torch.cuda.is_available() else None,
                         merged_bytes=host.merged_bytes if host is not None else 0)  # fmt: skip

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return (f"ExpertPool(resident={self.resident}, capacity={self.capacity}, max_bytes={self.max_bytes}, "
                f"registry={str(self.registry.root)!r})")  # fmt: skip

    # -- internals (all under base.lock) -----------------------------------------------------------------
    def _lookup(self, name: str) -> Expert:
        validate_expert_name(name)
        if name in self._extra:
            return self._extra[name]
        try:
            return self.registry.get(name)
        except UnknownNameError:
            raise UnknownNameError("expert", name, [*self.registry.names(), *self._extra]) from None

    def _ensure(self, name: str, count: bool = True) -> Expert:
        entry = self._entries.get(name)
        if entry is not None and self._is_current(name, entry.expert):
            self._entries.move_to_end(name)
            if count:
                self._counts["hits"] += 1
            return entry.expert
        if entry is not None:
            if entry.in_use:  # a newer version appeared while this one is generating: keep serving it
                self._entries.move_to_end(name)
                self._counts["hits"] += int(count)
                return entry.expert
            self._evict(name)
        expert = self._lookup(name)
        started = time.perf_counter()
        expert.check(self.base)
        need = expert.estimated_bytes()
        if self.max_bytes is not None and need > self.max_bytes:
            raise InvalidInputError(
                f"expert {name!r} needs {need:,} bytes, more than the pool's max_bytes={self.max_bytes:,}"
            )
        victims = self._victims(need)
        evicted = [self._entries[v].expert for v in victims]
        take_over = next((old for old in evicted if _swappable(expert, old)), None)
        for victim in victims:
            self._evict(victim, keep=self._entries[victim].expert is take_over)
        try:
            expert.load(self.base, take_over=take_over)
        except BaseException:
            if take_over is not None:
                take_over.unload()  # its slot was not handed over after all
            raise
        elapsed = (time.perf_counter() - started) * 1000
        self._load_ms += elapsed
        self._counts["misses"] += 1
        self._counts["hotswaps"] += int(take_over is not None)
        self._entries[name] = _Entry(expert, bytes=expert.resident_bytes or need)
        logger.debug("loaded expert %s in %.1f ms%s; resident %d experts, %s bytes, process RSS %s",
                     name, elapsed, " (hot-swap)" if take_over is not None else "", len(self._entries),
                     f"{self.resident_bytes:,}", _fmt_bytes(process_rss_bytes()))  # fmt: skip
        return expert

    def _is_current(self, name: str, expert: Expert) -> bool:
        if name in self._extra:
            return self._extra[name] is expert
        versions = self.registry.versions(name)
        return bool(versions) and versions[-1] == expert.version

    def _victims(self, need: int) -> list[str]:
        """Idle experts to evict, least recently used first, so one more (of ``need`` bytes) fits."""
        victims, count, size = [], len(self._entries) + 1, self.resident_bytes + need
        for name, entry in self._entries.items():
            over = count > self.capacity or (self.max_bytes is not None and size > self.max_bytes)
            if not over:
                break
            if entry.evictable:
                victims.append(name)
                count -= 1
                size -= entry.bytes
        if count > self.capacity or (self.max_bytes is not None and size > self.max_bytes):
            self._counts["overflows"] += 1
            logger.warning("expert pool over capacity: every resident expert is in use or pinned (%s)", self.resident)
        return victims

    def _evict(self, name: str, keep: bool = False) -> None:
        entry = self._entries.pop(name)
        if not keep:  # a kept expert's slot is being handed to the expert replacing it
            entry.expert.unload()
        self._counts["evictions"] += 1
        logger.debug("evicted expert %s (%s bytes); resident %d", name, f"{entry.bytes:,}", len(self._entries))

    def _trim(self) -> None:
        """Back within capacity after an overflow, once experts are released."""
        for name in list(self._entries):
            over = len(self._entries) > self.capacity or (
                self.max_bytes is not None and self.resident_bytes > self.max_bytes
            )
            if not over:
                return
            if self._entries[name].evictable:
                self._evict(name)


def _swappable(new: Expert, old: Expert) -> bool:
    check = getattr(new, "can_swap_with", None)
    return bool(check and check(old))


def process_rss_bytes() -> int | None:
    """Resident memory of this process from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


def _fmt_bytes(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**20:.0f} MiB"
