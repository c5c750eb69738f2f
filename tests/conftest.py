"""Shared fixtures: tiny random models built in the test session, and the embedded SmolLM2."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from adaptive_moe import load_base_model
from adaptive_moe.config import LoRASettings
from adaptive_moe.testing import make_tiny_model

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def run_python():
    """Run code in a fresh interpreter (for import-time behaviour); returns (stdout, stderr), asserting exit 0."""
    import subprocess
    import sys

    def run(code: str) -> tuple[str, str]:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout, out.stderr

    return run


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama", chat_template=True)


@pytest.fixture(scope="session")
def tiny_quant_dir(tmp_path_factory):
    """A tiny Llama wide enough (64) for bitsandbytes' CPU 4-bit kernels, which quantize blocks of 64."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama-64"), "llama", chat_template=True, hidden_size=64)


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny-gpt2"), "gpt2", chat_template=False)


@pytest.fixture(scope="session")
def tiny_base(tiny_llama_dir):
    return load_base_model(name_or_path=str(tiny_llama_dir), device="cpu")


@pytest.fixture(scope="session")
def smollm2():
    """The embedded SmolLM2-135M-Instruct (converted once into the cache, then ~1 s per load)."""
    return load_base_model(device="cpu")


@pytest.fixture(autouse=True)
def _drop_library_log_handlers():
    """setup_logging (called by the CLI) binds handlers to the streams of the test that called it."""
    yield
    import logging

    logger = logging.getLogger("adaptive_moe")
    for handler in [h for h in logger.handlers if getattr(h, "_adaptive_moe", False)]:
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.NOTSET)


@dataclass
class TrainedExpert:
    """A small expert trained once per test session on the embedded model."""

    domain: object  # adaptive_moe.creation.SyntheticDomain
    adapter_dir: Path
    base_logits_before: torch.Tensor


# A handful of facts, few steps: enough to learn the training wording, fast on one CPU thread.
FIXTURE_LORA = LoRASettings(
    r=16, alpha=32, learning_rate=5e-3, epochs=6.0, batch_size=8, max_length=96, dropout=0.0, min_steps=0
)
PROBE = "What is the capital of France?"


def _probe_logits(base) -> torch.Tensor:
    ids = base.tokenizer(PROBE, return_tensors="pt")
    with torch.no_grad():
        return base.model(**ids).logits


@pytest.fixture(scope="session")
def probe_logits():
    """Logits of the base on a fixed probe prompt: equal before and after means the base is untouched."""
    return _probe_logits


@pytest.fixture(scope="session")
def trained_experts(smollm2, tmp_path_factory):
    """Two experts on the embedded SmolLM2, trained once per session for the tests that need one:
    ``{"people": TrainedExpert, "companies": TrainedExpert}`` (2 invented entities, 10 facts each)."""
    from adaptive_moe.creation import make_synthetic_domain, train_lora

    root = tmp_path_factory.mktemp("experts")
    experts = {}
    for kind in ("people", "companies"):
        dom = make_synthetic_domain(kind, n_entities=2, seed=1, restatements_per_fact=1)
        before = _probe_logits(smollm2)
        path = train_lora(smollm2, dom.documents + dom.train_qa, root / kind, lora=FIXTURE_LORA, progress=False)
        experts[kind] = TrainedExpert(dom, path, before)
    return experts


def require(package: str):
    """Import ``package`` or skip the test (or, called at import time, the module); under ``CI=true`` a
    missing package fails instead (CI installs everything the suite needs)."""
    import importlib
    import os

    try:
        return importlib.import_module(package)
    except ImportError as e:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{package} is missing under CI=true: {e}")
        pytest.skip(f"{package} is not installed", allow_module_level=True)


def unavailable(what: str):
    """Skip the test for a missing service, or fail it under ``CI=true`` (CI starts every service)."""
    import os

    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} under CI=true")
    pytest.skip(what)


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server on 127.0.0.1 for the session (as the ``postgres`` account when root)."""
    require("psycopg")
    from adaptive_moe.errors import AdaptiveMoEError
    from adaptive_moe.testing import PostgresServer, postgres_binaries

    if postgres_binaries() is None:
        unavailable("PostgreSQL's server programs (initdb, pg_ctl) are not installed")
    server = PostgresServer()
    try:
        server.start()
    except AdaptiveMoEError as e:
        server.stop()
        unavailable(f"PostgreSQL did not start: {e}")
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """The URL of a new, empty database on the session's PostgreSQL server."""
    import uuid

    return postgres_server.create_database(f"t_{uuid.uuid4().hex[:12]}")
