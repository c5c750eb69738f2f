"""Requests that arrive together are answered in one batched call of the routed system.

With ``serve.scheduler: continuous`` (the default) the batcher runs ``serve.max_batch`` workers that each
answer one request at a time: their generations meet in the base's decoding engine
(:mod:`adaptive_moe.model.engine`), which decodes every request in flight together, token by token. What
follows is the ``static`` scheduler, one worker:

One worker thread owns the model. A request waits in a bounded queue; the worker takes the first one,
waits up to ``batch_window_ms`` for others to join (at most ``max_batch``), groups them by their
generation settings and forced experts (a batch shares both), and answers each group with one
:meth:`AdaptiveMoE.generate` call: one base pass for the whole group, then one pass per expert the
router chose (requests bound for different experts share the batch). A full queue refuses at once
(the server answers 503 with ``Retry-After``); a request whose client went away before its batch
started is dropped, and a batch whose clients have all gone away stops generating at the next token. A
streamed request (without log-probabilities or stop strings) is answered alone, its tokens handed to its
handler as they are generated (:mod:`adaptive_moe.serving.live`).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

from ..errors import AdaptiveMoEError
from ..model.generation import cancellable

logger = logging.getLogger(__name__)


class QueueFullError(AdaptiveMoEError, RuntimeError):
    """The server's queue is full: retry later."""


@dataclass
class Job:
    """One request for the worker: the prompt, its generation settings, forced experts, its id."""

    prompt: Any
    settings: dict[str, Any]
    experts: tuple[str, ...] | None
    request_id: str
    check: Any = None  # called by the worker before answering (it owns the tokenizer); raises to refuse
    checked: Any = None  # what ``check`` returned
    live: Any = None  # a LiveStream: the request is streamed as it is generated (answered alone)
    future: Future = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)
    enqueued: float = field(default_factory=time.perf_counter)

    @property
    def key(self) -> tuple[str, tuple[str, ...] | None]:
        """Requests with equal keys can share one generate call."""
        return json.dumps(self.settings, sort_keys=True, default=str), self.experts


class Batcher:
    """The worker thread and its queue (see the module docstring).

    Args:
        moe: the :class:`~adaptive_moe.AdaptiveMoE` answering.
        max_batch: most requests per generate call.
        window_s: how long the first request waits for company.
        max_queue: most requests waiting.
        on_batch: called with each group's size and seconds (metrics), optional.
        before_batch: called in the worker before each batch (say, to pick up experts registered by
            another process), optional; an error it raises is logged, not fatal.
    """

    def __init__(self, moe: Any, *, max_batch: int, window_s: float, max_queue: int, on_batch=None,
                 before_batch=None, workers: int = 1) -> None:  # fmt: skip
        self.moe, self.max_batch, self.window_s = moe, max_batch, window_s
        self.on_batch, self.before_batch = on_batch, before_batch
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self._busy_lock = threading.Lock()
        self._busy_count = 0
        self._threads = [threading.Thread(target=self._run, name=f"adaptive_moe-batcher-{i}", daemon=True)
                         for i in range(max(1, workers))]  # fmt: skip
        for thread in self._threads:
            thread.start()

    @property
    def waiting(self) -> int:
        """Requests in the queue."""
        return self._queue.qsize()

    @property
    def alive(self) -> bool:
        """Whether every worker thread is running."""
        return all(thread.is_alive() for thread in self._threads)

    @property
    def busy(self) -> bool:
        """Whether a worker is answering a batch now."""
        return self._busy_count > 0

    def submit(self, job: Job) -> Job:
        """Queue ``job``; raises :class:`QueueFullError` at once when the queue is full."""
        if self._stop.is_set():
            raise QueueFullError("the server is shutting down")
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFullError(f"{self._queue.maxsize} requests are already waiting; retry shortly") from None
        return job

    def stop(self, timeout: float | None = None) -> None:
        """Answer what is queued, then stop the worker."""
        self._stop.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    # -- the worker ----------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=0.05)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            batch = [first]
            deadline = time.perf_counter() + self.window_s
            while len(batch) < self.max_batch:
                remaining = deadline - time.perf_counter()
                try:
                    batch.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
                except queue.Empty:
                    break
            if self.before_batch is not None:
                try:
                    self.before_batch()
                except Exception:
                    logger.exception("before_batch failed")
            groups: dict[Any, list[Job]] = {}
            live: list[Job] = []
            for job in batch:
                if job.cancelled.is_set():
                    job.future.cancel()
                    _finish(job)
                    continue
                if job.check is not None:
                    try:
                        job.checked = job.check()
                    except BaseException as e:  # noqa: BLE001 - the request's handler answers it
                        _settle(job, error=e)
                        _finish(job)
                        continue
                if job.live is not None:
                    live.append(job)
                else:
                    groups.setdefault(job.key, []).append(job)
            with self._busy_lock:
                self._busy_count += 1
            try:
                for jobs in groups.values():
                    self._answer(jobs)
                for job in live:
                    self._answer_live(job)
            finally:
                with self._busy_lock:
                    self._busy_count -= 1

    def _answer_live(self, job: Job) -> None:
        """Answer one streamed request alone, its tokens handed to its handler as they are generated."""
        started = time.perf_counter()
        try:
            with cancellable(job.cancelled.is_set):
                out = self.moe.answer_streamed(job.prompt, job.live.streamer, on_route=job.live.route,
                                               experts=list(job.experts or []) or None, request_id=job.request_id,
                                               **job.settings)  # fmt: skip
        except BaseException as e:  # noqa: BLE001 - handed to the request's handler, which answers it
            logger.warning("a streamed request failed: %s", e)
            _settle(job, error=e)
        else:
            if self.on_batch is not None:
                self.on_batch(1, time.perf_counter() - started)
            _settle(job, result=out)
        finally:
            _finish(job)

    def _answer(self, jobs: list[Job]) -> None:
        started = time.perf_counter()
        gone = lambda: all(j.cancelled.is_set() for j in jobs)  # noqa: E731 - every client of the batch left
        try:
            with cancellable(gone):
                outputs = self.moe.generate([j.prompt for j in jobs], experts=list(jobs[0].experts or []) or None,
                                            request_ids=[j.request_id for j in jobs], **jobs[0].settings)  # fmt: skip
        except BaseException as e:  # noqa: BLE001 - handed to each request's handler, which answers it
            logger.warning("a batch of %d requests failed: %s", len(jobs), e)
            for j in jobs:
                _settle(j, error=e)
            return
        if self.on_batch is not None:
            self.on_batch(len(jobs), time.perf_counter() - started)
        for j, out in zip(jobs, outputs, strict=True):
            _settle(j, result=out)


def _finish(job: Job) -> None:
    if job.live is not None:
        job.live.finish()


def _settle(job: Job, result: Any = None, error: BaseException | None = None) -> None:
    """Hand ``job`` its answer or error; one whose client left (its future cancelled, maybe just now by the
    server's event loop) is cancelled instead, never an error in the worker."""
    try:
        if job.cancelled.is_set():
            job.future.cancel()
        elif error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)
    except InvalidStateError:
        pass  # cancelled by the handler between the check and the hand-over
