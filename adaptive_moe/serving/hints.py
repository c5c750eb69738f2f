"""Which expert a routed call will likely need, guessed at the ingress without the base model.

A routed call (model ``adaptive-moe``) is decided on the replica that gets it: base or expert. On Ray
Serve the ingress can still steer it to a replica that holds the expert the router would match, by giving
that expert as Serve's multiplexed model id. :class:`ExpertHints` reads the router the replicas saved in
the workspace (``<workspace>/router/``; re-read when it changes, as when an expert is registered), embeds
the call's question with the router's own text encoder (MiniLM for the shipped router) and names the
best-matching registered expert when it scores at least ``router.min_match_score``.

The hint only places the call: the replica still decides base or expert. A router that embeds with the
base model's states (``router.embedder: base``) cannot be read without the base, so it gives no hint.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..config import AdaptiveMoEConfig
from ..errors import AdaptiveMoEError

logger = logging.getLogger(__name__)

__all__ = ["ExpertHints"]

ROUTER_FILE = "router.json"


class ExpertHints:
    """The expert a routed call's text matches best, from the workspace's saved router (see the module
    docstring). Thread-safe; :meth:`hint` costs one text embedding."""

    def __init__(self, config: AdaptiveMoEConfig) -> None:
        self.folder = config.workspace_path("router")
        self._router: Any = None
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._unusable = False  # a router that embeds with the base: said once, then no hints

    def _current(self) -> Any:
        """The saved router, read again when its file changed; None when there is none or it cannot hint."""
        path = self.folder / ROUTER_FILE
        try:
            stat = path.stat()
        except OSError:
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._stamp = stamp
            self._router = self._read()
        return self._router

    def _read(self) -> Any:
        from ..routing import load_saved_router

        try:
            router = load_saved_router(self.folder, "uncertainty")
        except (AdaptiveMoEError, OSError, ValueError, KeyError, TypeError) as e:  # being rewritten, or unreadable
            logger.warning("expert hints: cannot read the router in %s (%s: %s)", self.folder, type(e).__name__, e)
            return None
        if getattr(router.config, "embedder", None) == "base" or getattr(router, "matcher", None) is None:
            if not self._unusable:
                logger.info("expert hints: the router embeds with the base model; routed calls go to any replica")
            self._unusable = True
            return None
        return router

    def hint(self, text: str, registered: list[str]) -> str | None:
        """The registered expert that ``text`` matches best, when it scores at least the router's
        ``min_match_score``; else None."""
        from ..routing.base import Query

        with self._lock:
            router = self._current()
            if router is None or not text or not router.matcher.experts:
                return None
            [scores] = router.match_scores([Query(text)])
        matched = router.matched_experts({n: s for n, s in scores.items() if n in registered})
        return matched[0][0] if matched else None
