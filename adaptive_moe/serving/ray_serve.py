"""Scale out on Ray Serve: the same FastAPI app as an ingress deployment in front of model replicas.

``adaptive-moe serve --engine ray --replicas N`` (or :func:`serve_ray`) deploys one application:

- ``AdaptiveMoEIngress``: the HTTP routes of :func:`~adaptive_moe.serving.create_app` (the same checks,
  errors, metrics and responses as the one-process server), with a :class:`RayBackend` that sends each
  checked call to a replica;
- ``AdaptiveMoEModel``: N replicas, each an :class:`~adaptive_moe.AdaptiveMoE` with its own expert pool
  and batching worker (a :class:`~adaptive_moe.serving.backend.LocalBackend`).

A call for an expert (its name as the model) carries the expert as Serve's *multiplexed model id*, so it
lands on a replica that already holds that expert when one does; each replica keeps at most
``pool.capacity`` experts loaded (``max_num_models_per_replica``). A routed call is decided by the replica
that gets it, base or expert; with ``serve.steer_routed`` the ingress first guesses the expert its question
matches (:class:`~adaptive_moe.serving.hints.ExpertHints`: the saved router's matcher, no base model) and
sends it as the multiplexed id, so the call lands where that expert is loaded. Replicas read one registry
(the workspace on a path they all see) and pick up experts registered after start before their next
batch; the gap ledger is shared through ``gaps.database_url`` (PostgreSQL) when replicas run on several
machines, and a request id keeps a retried request from being recorded twice.

Serve does not replay a request whose replica died: the ingress retries it (``RETRIES`` times) on
another replica, then answers 503 with ``Retry-After``, which the ``openai`` client retries by itself.
Each replica serves ``serve.max_queue`` calls at once (``max_ongoing_requests``): its own batcher
queues them, so Serve never piles calls behind the model lock.

For ``serve run`` or a Serve config file (KubeRay): ``adaptive_moe.serving.ray_serve:app_builder`` with
the arguments ``config`` (a YAML path, optional) and ``replicas``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..config import AdaptiveMoEConfig
from ..errors import AdaptiveMoEError, missing_dependency
from .backend import Call, LocalBackend, Reply
from .responses import APIError

logger = logging.getLogger(__name__)

__all__ = ["RETRIES", "RayBackend", "app_builder", "build_application", "serve_ray"]

RETRIES = 2  # calls re-sent after a replica died under them
INGRESS = "AdaptiveMoEIngress"
MODEL = "AdaptiveMoEModel"
APP_NAME = "adaptive_moe"


def _serve():
    try:
        from ray import serve
    except ImportError:
        raise missing_dependency("ray", extra="ray", purpose="serving on Ray Serve") from None
    return serve


class RayBackend:
    """The ingress's side: calls go to the model deployment's replicas (see the module docstring)."""

    def __init__(self, handle: Any, config: AdaptiveMoEConfig) -> None:
        from ..experts import ExpertRegistry

        self.handle = handle
        self.full_config = config
        self.config = config.serve
        self.registry = ExpertRegistry(config.registry_path, allow_pickle=config.pool.allow_pickle)
        self.pool = None  # each replica has its own; their metrics are the replicas'
        self.waiting = 0
        self.in_flight: dict[str, int] = {}  # calls per expert now at the replicas (serve.spread_after)
        self.spread = 0  # calls for an expert sent to any replica because it was hot
        self.hinted = 0  # routed calls steered to the expert their question matched (serve.steer_routed)
        self.hints = None
        if self.config.multiplex and self.config.steer_routed:
            from .hints import ExpertHints

            self.hints = ExpertHints(config)

    def start(self) -> None:
        """Nothing to start: the replicas are Serve's."""

    def stop(self, timeout: float | None = None) -> None:
        """Nothing to stop: Serve drains the replicas."""

    def expert_names(self) -> list[str]:
        """The experts of the shared registry (one registered after start shows at once)."""
        return self.registry.names()

    def health(self) -> dict[str, Any]:
        """What ``GET /health`` shows besides the status."""
        return {"engine": "ray", "experts": self.expert_names(), "spread": self.spread, "hinted": self.hinted}

    async def answer(self, call: Call, disconnected: Any = None) -> Reply:
        """Send ``call`` to a replica (the one holding its expert, when it names one); re-send it when the
        replica dies under it; cancel it when the client leaves."""
        expert = call.experts[0] if call.experts else None
        if expert is None and self.hints is not None:
            expert = await asyncio.to_thread(self._hint, call)
            self.hinted += expert is not None
        steer = bool(expert) and self.config.multiplex
        if steer and self.config.spread_after and self.in_flight.get(expert, 0) >= self.config.spread_after:
            steer = False  # a hot expert: let Serve pick the least busy replica, which loads it too
            self.spread += 1
        handle = self.handle.options(multiplexed_model_id=expert) if steer else self.handle
        if expert:
            self.in_flight[expert] = self.in_flight.get(expert, 0) + 1
        try:
            return await self._send(handle, call, disconnected)
        finally:
            if expert:
                self.in_flight[expert] -= 1

    def _hint(self, call: Call) -> str | None:
        from ..model.generation import query_text

        try:
            return self.hints.hint(query_text(call.prompt), self.expert_names())
        except Exception as e:  # noqa: BLE001 - a hint is an optimisation: a failure leaves the call to any replica
            logger.warning("request %s: no expert hint (%s: %s)", call.request_id, type(e).__name__, e)
            return None

    async def _send(self, handle: Any, call: Call, disconnected: Any) -> Reply:
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        for attempt in range(RETRIES + 1):
            response = handle.answer.remote(call)
            task = asyncio.ensure_future(_result(response))
            try:
                while True:
                    done, _ = await asyncio.wait({task}, timeout=0.25)
                    if done:
                        return task.result()
                    if disconnected is not None and await disconnected():
                        response.cancel()
                        task.cancel()
                        return Reply.client_closed()
            except (ActorDiedError, ActorUnavailableError, RayActorError) as e:
                logger.warning("request %s: replica lost (%s); attempt %d of %d", call.request_id,
                               type(e).__name__, attempt + 1, RETRIES + 1)  # fmt: skip
        return Reply.error(APIError(503, "the model replicas are restarting; retry shortly", type_="server_error",
                                    code="unavailable", headers={"Retry-After": "1"}))  # fmt: skip


async def _result(response: Any) -> Any:
    return await response


def _model_deployment(config: AdaptiveMoEConfig, replicas: int):
    serve = _serve()
    cpus = config.serve.replica_cpus or round(1.8 / replicas, 3)

    @serve.deployment(name=MODEL, num_replicas=replicas, ray_actor_options={"num_cpus": cpus},
                      max_ongoing_requests=config.serve.max_queue,
                      graceful_shutdown_timeout_s=config.serve.graceful_shutdown_s)  # fmt: skip
    class AdaptiveMoEModel:
        """One replica: the routed system, its pool and its batching worker."""

        def __init__(self, config_dict: dict[str, Any]) -> None:
            import torch

            from ..moe import AdaptiveMoE

            torch.set_num_threads(max(1, round(cpus)))
            cfg = AdaptiveMoEConfig.from_dict(config_dict)
            self.moe = AdaptiveMoE(cfg)
            self.backend = LocalBackend(self.moe, cfg.serve)
            self.backend.start()
            self.name = serve.get_replica_context().replica_id.unique_id
            self.loads = 0  # experts loaded by Serve's multiplexing on this replica

        @serve.multiplexed(max_num_models_per_replica=config.pool.capacity)
        async def resident(self, expert: str) -> str:
            """Load ``expert`` into this replica's pool (Serve keeps the replicas' LRU of experts)."""
            await asyncio.to_thread(self._load, expert)
            return expert

        def _load(self, expert: str) -> None:
            self.loads += 1
            self.moe.pool.prefetch([expert])

        async def answer(self, call: Call) -> Reply:
            """Answer one call through this replica's batcher."""
            expert = serve.get_multiplexed_model_id()
            if call.experts or expert:
                self.backend.refresh()  # an expert registered after start
            loads = self.loads
            if expert and call.experts:
                await self.resident(expert)
            elif expert:  # a routed call the ingress steered here: loading its likely expert only helps
                try:
                    await self.resident(expert)
                except (AdaptiveMoEError, OSError) as e:  # gone from the registry, or unreadable
                    logger.warning("request %s: hinted expert %s not loaded (%s: %s)", call.request_id, expert,
                                   type(e).__name__, e)  # fmt: skip
            reply = await self.backend.answer(call)
            reply.replica = self.name
            fields = (reply.body or {}).get("adaptive_moe")
            if self.loads > loads and fields is not None:  # this call loaded the expert: a miss, not a hit
                cache = fields.setdefault("cache", {})
                cache["misses"] = cache.get("misses", 0) + 1
                cache["hits"] = max(0, cache.get("hits", 0) - 1)
            return reply

        def check_health(self) -> None:
            """Serve's health check: the workers (and the decoding engine, when one runs) must be alive."""
            if self.backend.batcher is None or not self.backend.batcher.alive:
                raise RuntimeError("the batching worker stopped")
            if not self.backend.engine_alive:
                raise RuntimeError("the decoding engine stopped")

        def __del__(self) -> None:
            backend = getattr(self, "backend", None)
            if backend is not None:
                backend.stop(5)

    return AdaptiveMoEModel


def build_application(config: AdaptiveMoEConfig | None = None, replicas: int | None = None, *,
                      api_key: str | None = None) -> Any:  # fmt: skip
    """The Serve application: the ingress bound to ``replicas`` model replicas (default ``serve.replicas``)."""
    serve = _serve()
    config = config or AdaptiveMoEConfig()
    config.validate()
    replicas = replicas or config.serve.replicas
    model = _model_deployment(config, replicas)

    @serve.deployment(name=INGRESS, ray_actor_options={"num_cpus": 0.1},
                      max_ongoing_requests=4 * config.serve.max_queue)  # fmt: skip
    @serve.ingress()
    class AdaptiveMoEIngress:
        """The HTTP routes; each checked call goes to a model replica."""

        def __init__(self, handle: Any, config_dict: dict[str, Any], key: str | None) -> None:
            self.backend = RayBackend(handle, AdaptiveMoEConfig.from_dict(config_dict))
            self.key = key

        def __serve_build_asgi_app__(self):
            from .app import create_app

            return create_app(self.backend, self.backend.config, api_key=self.key)

    as_dict = config.to_dict()
    return AdaptiveMoEIngress.bind(model.bind(as_dict), as_dict, api_key)


def app_builder(args: dict[str, Any]) -> Any:
    """For ``serve run adaptive_moe.serving.ray_serve:app_builder config=F replicas=N`` and Serve config
    files: the application of :func:`build_application`."""
    path = args.get("config")
    config = AdaptiveMoEConfig.from_yaml(path) if path else AdaptiveMoEConfig()
    replicas = int(args["replicas"]) if args.get("replicas") else None
    return build_application(config, replicas)


def serve_ray(config: AdaptiveMoEConfig, replicas: int | None = None, address: str | None = None) -> None:
    """Deploy on Ray Serve and block until SIGTERM/SIGINT; then shut Serve down, and the local Ray when
    this call started it. ``address`` (or ``serve.ray_address``, or ``$RAY_ADDRESS``) joins a cluster."""
    import os
    import signal
    import threading

    serve = _serve()
    import ray

    address = address or config.serve.ray_address or os.environ.get("RAY_ADDRESS") or None
    started_ray = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address)
        else:
            # on a small, busy machine Serve's HTTP proxy can take longer than its default 5 s readiness check
            # (three misses and it is killed): give it room on the Ray this command starts
            os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "30")
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False)
            started_ray = True
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        serve.start(http_options={"host": config.serve.host, "port": config.serve.port})
        serve.run(build_application(config, replicas), name=APP_NAME, route_prefix="/")
        logger.info("serving on http://%s:%d with %d replicas", config.serve.host, config.serve.port,
                    replicas or config.serve.replicas)  # fmt: skip
        while not stop.wait(0.5):
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        serve.shutdown()
        if started_ray:
            ray.shutdown()
