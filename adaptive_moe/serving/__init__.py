"""Serving: the OpenAI-compatible HTTP API (``adaptive-moe serve``) with request batching."""

from .app import API_KEY_ENV, APIError, create_app, serve
from .backend import Call, LocalBackend, Reply
from .batcher import Batcher, Job, QueueFullError

__all__ = [
    "API_KEY_ENV",
    "APIError",
    "Batcher",
    "Call",
    "Job",
    "LocalBackend",
    "QueueFullError",
    "Reply",
    "create_app",
    "serve",
]
