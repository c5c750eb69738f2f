"""Property-based tests (hypothesis): any value of any config key, any expert name, any prompt and any HTTP
request body gets a correct result or one clear error from the library, never a raw error of a dependency
and never a 500 from the server."""

from __future__ import annotations

import math
import re

import pytest
import yaml
from conftest import require
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig
from adaptive_moe.config import config_help
from adaptive_moe.errors import ConfigError, InvalidInputError
from adaptive_moe.experts.card import validate_expert_name
from adaptive_moe.testing import ServerThread, make_random_adapter

KEYS = [key for key, _, _ in config_help()]
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(KEYS), JSONISH)
def test_any_value_of_any_config_key_is_valid_or_one_clear_error_naming_it(key, value):
    try:
        cfg = AdaptiveMoEConfig().replace(**{key: value})
    except ConfigError as e:
        assert key in str(e)  # the error names the key it is about
        return
    cfg.validate()  # what was accepted is a valid config, and survives a round trip through YAML
    again = AdaptiveMoEConfig.from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again.to_dict() == cfg.to_dict()


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_an_expert_name_is_a_safe_folder_name_or_refused(name):
    try:
        accepted = validate_expert_name(name)
    except InvalidInputError as e:
        assert "invalid expert name" in str(e)
        return
    assert accepted == name and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name) and ".." not in name


@pytest.fixture(scope="module")
def moe(tmp_path_factory, tiny_llama_dir, tiny_base):
    tmp = tmp_path_factory.mktemp("props")
    cfg = AdaptiveMoEConfig().replace(
        workspace=str(tmp / "ws"),
        **{"model.name_or_path": str(tiny_llama_dir), "generation.max_new_tokens": 3, "router.embedder": "base",
           "integrator.expert_confidence_floor": 0.0, "serve.max_body_bytes": 8192, "serve.batch_window_ms": 0.0},
    )  # fmt: skip
    system = AdaptiveMoE(cfg, base=tiny_base)
    system.add_expert(make_random_adapter(tiny_base.model, tmp / "alpha", seed=1), "alpha", questions=["Who?"])
    yield system
    system.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(TEXT | st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "bot"]),
                                              "content": TEXT}), max_size=3))  # fmt: skip
def test_any_prompt_gets_an_answer_or_a_clear_error(moe, prompt):
    try:
        out = moe.generate(prompt, record_gaps=False)
    except InvalidInputError:
        return
    assert isinstance(out.text, str) and out.route in ("base", "expert", "gap", "abstain")


PARAMS = {
    "model": st.sampled_from(["adaptive-moe", "alpha", "nope", ""]) | JSONISH,
    "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "robot"]),
                                                "content": TEXT | JSONISH}), max_size=3) | JSONISH,
    "max_tokens": st.integers(-5, 300) | JSONISH,
    "temperature": st.floats(-1, 3) | st.just(math.nan) | JSONISH,
    "top_p": st.floats(-1, 2) | JSONISH,
    "stream": st.booleans() | JSONISH,
    "logprobs": st.booleans() | JSONISH,
    "top_logprobs": st.integers(-2, 30) | JSONISH,
    "stop": TEXT | st.lists(TEXT, max_size=5) | JSONISH,
    "seed": st.integers(-(2**70), 2**70) | JSONISH,
    "n": st.integers(0, 3) | JSONISH,
    "tools": JSONISH,
    "stream_options": st.fixed_dictionaries({"include_usage": JSONISH}) | JSONISH,
}  # fmt: skip


@pytest.fixture(scope="module")
def server(moe):
    require("fastapi")
    require("uvicorn")
    from adaptive_moe.serving import create_app

    thread = ServerThread(create_app(moe, api_key=""))
    yield thread
    thread.stop(30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.fixed_dictionaries({}, optional=PARAMS))
def test_any_request_body_gets_an_answer_or_an_openai_error_never_a_500(server, body):
    httpx = require("httpx")
    r = httpx.post(server.url + "/v1/chat/completions", json=_finite(body), timeout=60)
    assert r.status_code in (200, 400, 404, 413), r.text[:500]
    if r.status_code != 200:
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
    elif r.headers["content-type"].startswith("text/event-stream"):
        assert r.text.rstrip().endswith("data: [DONE]")
    else:
        assert r.json()["choices"][0]["message"]["role"] == "assistant"


def _finite(value):
    """JSON cannot carry NaN or infinities: send them as strings (a wrong type the server must refuse)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value
