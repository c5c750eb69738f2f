"""The router shipped for the embedded SmolLM2 (package data), fitted by benchmarks/fit_embedded_router.py.

It is used by the facade when the base is the embedded model (same fingerprint) and the workspace has
no router of its own, so the first ``generate`` already knows when the base does not know.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path

logger = logging.getLogger(__name__)

EMBEDDED_ROUTER_DIR = Path(str(resources.files("adaptive_moe").joinpath("data", "routers", "smollm2-135m-instruct")))


def embedded_router_for(base):
    """The shipped router when ``base`` is the model it was fitted on, else ``None``."""
    manifest = EMBEDDED_ROUTER_DIR / "fit.json"
    if not manifest.is_file():
        return None
    try:
        fitted_on = json.loads(manifest.read_text()).get("base_fingerprint")
    except (OSError, ValueError):
        return None
    if fitted_on != base.fingerprint:
        return None
    from .router import UncertaintyRouter

    router = UncertaintyRouter.load(EMBEDDED_ROUTER_DIR)
    logger.info("using the router shipped for %s (threshold %.2f)", base.name, router.config.threshold)
    return router
