"""The HTTP server in front of the embedded SmolLM2: a real uvicorn on 127.0.0.1 and the real `openai` client."""

import pytest
from conftest import require

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig

pytestmark = pytest.mark.integration


openai = require("openai")
require("uvicorn")


def test_an_openai_client_gets_routed_answers_from_the_embedded_model(smollm2, tmp_path):
    from adaptive_moe.serving import create_app
    from adaptive_moe.testing import ServerThread

    cfg = AdaptiveMoEConfig().replace(workspace=str(tmp_path / "ws"), **{"generation.max_new_tokens": 16})
    with AdaptiveMoE(cfg, base=smollm2) as moe:
        server = ServerThread(create_app(moe, api_key=""))
        try:
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
            messages = [{"role": "user", "content": "What is the capital of France?"}]
            r = client.chat.completions.create(model="adaptive-moe", messages=messages)
            assert "Paris" in r.choices[0].message.content
            assert r.model_extra["adaptive_moe"]["route"] == "base" and r.usage.completion_tokens <= 16
            streamed = client.chat.completions.create(model="adaptive-moe", messages=messages, stream=True)
            assert (
                "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == r.choices[0].message.content
            )
        finally:
            server.stop()
