"""Shared fixtures: tiny random models built in the test session, and the embedded SmolLM2."""

from __future__ import annotations

import pytest
import torch

from adaptive_moe import load_base_model
from adaptive_moe.testing import make_tiny_model

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama", chat_template=True)


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
