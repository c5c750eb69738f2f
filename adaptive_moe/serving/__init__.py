"""Serving: the OpenAI-compatible HTTP API (``adaptive-moe serve``) with request batching."""

from .app import API_KEY_ENV, APIError, create_app, serve
from .batcher import Batcher, Job, QueueFullError

__all__ = ["API_KEY_ENV", "APIError", "Batcher", "Job", "QueueFullError", "create_app", "serve"]
