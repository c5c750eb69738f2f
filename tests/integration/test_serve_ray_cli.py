"""``adaptive-moe serve --engine ray``: the command starts a local Ray on this machine, serves the OpenAI
API from an ingress and a replica, and on SIGTERM shuts Serve and its Ray down and exits 0."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from conftest import require

from adaptive_moe import AdaptiveMoEConfig
from adaptive_moe.testing import free_port

require("ray")
openai = require("openai")
httpx = require("httpx")


def test_the_serve_command_on_ray_answers_and_stops_cleanly(tmp_path, tiny_llama_dir):
    cfg = AdaptiveMoEConfig().replace(
        workspace=str(tmp_path / "ws"),
        **{"model.name_or_path": str(tiny_llama_dir), "generation.max_new_tokens": 4, "router.embedder": "base"},
    )  # fmt: skip
    config = tmp_path / "config.yaml"
    config.write_text(cfg.to_yaml())
    port = free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - Ray logs a lot: a file, not a pipe that could fill
    proc = subprocess.Popen([sys.executable, "-m", "adaptive_moe.cli", "serve", "--config", str(config), "--engine",
                             "ray", "--replicas", "1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(url + "/health", timeout=2).json().get("engine") == "ray":
                    break
            except (httpx.HTTPError, ValueError):  # not up yet: Serve's proxy may answer in plain text meanwhile
                pass
            assert time.time() < deadline, "the Ray server did not come up"
            time.sleep(1)
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=2, timeout=120)
        r = client.chat.completions.create(model="adaptive-moe", messages=[{"role": "user", "content": "Hello?"}])
        assert r.object == "chat.completion" and r.usage.completion_tokens <= 4
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        finally:
            log.close()
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()[-3000:]
