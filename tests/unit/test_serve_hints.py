"""The ingress's guess of the expert a routed call needs (serve.steer_routed): the workspace's saved
router, read without the base model, on a tiny random base with the MiniLM text encoder."""

from __future__ import annotations

import pytest

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig
from adaptive_moe.serving.hints import ExpertHints
from adaptive_moe.testing import make_random_adapter

KOVANE = ["Who founded the Kovane weavers' guild?", "When did the Kovane guild get its charter?",
          "Where is the Kovane guild hall?"]  # fmt: skip
HARBOUR = ["How deep is the Varn estuary at low tide?", "Which ships can enter the Varn harbour?",
           "When does the Varn harbour lock open?"]  # fmt: skip


def _config(tmp_path, **changes):
    return AdaptiveMoEConfig().replace(workspace=str(tmp_path / "ws"), **{"router.pretrained": "none", **changes})


def test_a_routed_question_is_steered_to_the_expert_it_matches_and_a_new_expert_is_seen(tiny_base, tmp_path):
    cfg = _config(tmp_path)
    hints = ExpertHints(cfg)
    assert hints.hint(KOVANE[0], ["kovane"]) is None  # no router saved yet: no hint, no error
    with AdaptiveMoE(cfg, base=tiny_base) as moe:
        moe.add_expert(make_random_adapter(tiny_base.model, tmp_path / "a", seed=1), "kovane", questions=KOVANE)
        names = moe.experts.names()
        assert hints.hint("Who was the founder of the Kovane weavers guild?", names) == "kovane"
        assert hints.hint("What is the boiling point of water?", names) is None  # below min_match_score
        moe.add_expert(make_random_adapter(tiny_base.model, tmp_path / "b", seed=2), "varn", questions=HARBOUR)
        names = moe.experts.names()
        # the router file changed: read again, the new expert is known without a restart
        assert hints.hint("How deep is the Varn estuary?", names) == "varn"
        assert hints.hint("Who founded the Kovane guild?", names) == "kovane"
        # a question unlike the examples that names a word of them: matched by the saved router's words
        assert hints.hint("Is Kovane cloth sold abroad?", names) == "kovane"
    assert hints.hint("How deep is the Varn estuary?", ["kovane"]) is None  # only registered experts are named


def test_a_router_that_embeds_with_the_base_gives_no_hint(tiny_base, tmp_path):
    cfg = _config(tmp_path, **{"router.embedder": "base"})
    with AdaptiveMoE(cfg, base=tiny_base) as moe:
        moe.add_expert(make_random_adapter(tiny_base.model, tmp_path / "a", seed=1), "kovane", questions=KOVANE)
        assert (cfg.workspace_path("router") / "router.json").is_file()
        assert ExpertHints(cfg).hint(KOVANE[0], moe.experts.names()) is None


def test_an_unreadable_router_file_gives_no_hint_until_it_is_readable(tiny_base, tmp_path):
    cfg = _config(tmp_path)
    with AdaptiveMoE(cfg, base=tiny_base) as moe:
        moe.add_expert(make_random_adapter(tiny_base.model, tmp_path / "a", seed=1), "kovane", questions=KOVANE)
    path = cfg.workspace_path("router") / "router.json"
    good = path.read_text()
    path.write_text("{ not json")
    hints = ExpertHints(cfg)
    assert hints.hint(KOVANE[0], ["kovane"]) is None
    path.write_text(good + "\n")  # rewritten (a new size): read again
    assert hints.hint(KOVANE[0], ["kovane"]) == "kovane"


@pytest.mark.parametrize("steer", [True, False])
def test_the_ray_backend_asks_for_hints_only_when_steering(tmp_path, steer):
    from adaptive_moe.serving.ray_serve import RayBackend

    cfg = _config(tmp_path, **{"serve.steer_routed": steer})
    backend = RayBackend(handle=None, config=cfg)
    assert (backend.hints is not None) is steer and backend.health()["hinted"] == 0
