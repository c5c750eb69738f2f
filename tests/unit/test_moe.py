"""The AdaptiveMoE facade on a tiny model: routes, attribution, integrators (select, mixture, merge),
re-scoring and fallback, batching, chat input, streaming, save / load, threads and bad input."""

from __future__ import annotations

import threading

import pytest
import torch

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig, MoEOutput, load_base_model
from adaptive_moe.config import RouterConfig
from adaptive_moe.errors import AdaptiveMoEError, ConfigError, InvalidInputError, UnknownNameError
from adaptive_moe.integration import MixtureLogitsProcessor, merged_name
from adaptive_moe.routing import Router, RouteScores, register_router
from adaptive_moe.testing import make_random_adapter

GEN = {"max_new_tokens": 6}
FRANCE, HAMLET, FOX = "What is the capital of France?", "Who wrote Hamlet?", "The quick brown fox jumps"


@register_router
class FixedRouter(Router):
    """Confidence and match scores chosen by the test, per query text."""

    name = "fixed_for_tests"
    table: dict = {}  # noqa: RUF012 - set by each test

    def score(self, query):
        conf, scores = self.table.get(query.text, (0.0, {}))
        return RouteScores(conf, dict(scores))


@pytest.fixture(scope="module")
def base(tiny_llama_dir):
    return load_base_model(name_or_path=str(tiny_llama_dir), device="cpu")


@pytest.fixture(scope="module")
def adapters(base, tmp_path_factory):
    root = tmp_path_factory.mktemp("moe-adapters")
    return {
        "alpha": make_random_adapter(base.model, root / "alpha", seed=1),
        "beta": make_random_adapter(base.model, root / "beta", seed=2),
    }


def _config(tmp_path, **changes):
    cfg = AdaptiveMoEConfig().replace(
        workspace=str(tmp_path / "ws"),
        **{"generation.max_new_tokens": 6, "router.embedder": "base", "router.min_match_score": 0.0,
           "integrator.expert_confidence_floor": 0.0},
    )  # fmt: skip
    return cfg.replace(**changes) if changes else cfg


def _moe(base, adapters, tmp_path, table=None, **changes):
    """A system with the test router and both experts (alpha answers France/Hamlet, beta the fox)."""
    FixedRouter.table = table or {}
    moe = AdaptiveMoE(_config(tmp_path, **{"router.name": "fixed_for_tests", **changes}), base=base)
    moe.add_expert(adapters["alpha"], "alpha", questions=[FRANCE, HAMLET])
    moe.add_expert(adapters["beta"], "beta", questions=[FOX])
    return moe


def _alone(moe, name, prompts):
    with moe.pool.acquire([name]) as [expert]:
        return expert.generate(prompts, max_new_tokens=6)


def test_confident_query_stays_on_the_base_with_the_base_text(base, adapters, tmp_path):
    moe = _moe(base, adapters, tmp_path, {FRANCE: (0.9, {"alpha": 0.55})})  # matched, below the override (0.6)
    out = moe.generate(FRANCE)
    plain = base.generate_with_signals(FRANCE, max_new_tokens=6)[0]
    assert isinstance(out, MoEOutput)
    assert (out.route, out.text, out.experts, out.flagged) == ("base", plain.text, [], False)
    assert out.confidence == pytest.approx(0.9) and out.expert_confidence is None
    assert out.attribution.sources == {"base": 1.0}
    assert "".join(t.token for t in out.attribution.tokens) == base.tokenizer.decode(
        plain.token_ids, skip_special_tokens=True
    )
    assert {"base", "route", "total"} <= set(out.timings)
    assert "base confidence 0.90 >= threshold" in str(out)


def test_a_confident_query_close_to_an_expert_goes_to_it(base, adapters, tmp_path):
    moe = _moe(base, adapters, tmp_path, {FRANCE: (0.9, {"alpha": 0.9})})
    out = moe.generate(FRANCE)
    assert out.route == "expert" and out.experts == [("alpha", 1.0)] and out.confidence == pytest.approx(0.9)
    assert "but the query matches an expert >= 0.60" in out.reason and out.base_text is not None
    off = _moe(
        base, adapters, tmp_path / "off", {FRANCE: (0.9, {"alpha": 0.9})}, **{"router.override_match_score": None}
    )
    assert off.generate(FRANCE).route == "base"


def test_unconfident_query_goes_to_its_expert(base, adapters, tmp_path):
    moe = _moe(base, adapters, tmp_path, {FOX: (0.1, {"alpha": 0.2, "beta": 0.8})})
    out = moe.generate(FOX)
    assert out.route == "expert" and out.experts == [("beta", 1.0)]
    assert out.text == _alone(moe, "beta", [FOX])[0].text  # exactly what the expert answers alone
    assert out.attribution.sources == {"beta": 1.0} and out.attribution.strategy == "select"
    assert 0.0 <= out.expert_confidence <= 1.0
    assert out.cache["misses"] + out.cache["hits"] >= 1
    assert out.to_dict()["attribution"]["sources"] == {"beta": 1.0}


def test_uncovered_query_is_a_gap_in_the_ledger(base, adapters, tmp_path):
    moe = _moe(base, adapters, tmp_path, {"Who is Zorblat?": (0.1, {"alpha": 0.1, "beta": 0.2})},
               **{"router.min_match_score": 0.5})  # fmt: skip
    out = moe.generate("Who is Zorblat?")
    assert out.route == "gap" and out.flagged
    assert out.text == base.generate_with_signals("Who is Zorblat?", max_new_tokens=6)[0].text
    (entry,) = moe.gaps.entries()
    assert entry.query == "Who is Zorblat?" and entry.best_expert == "beta" and entry.best_score == pytest.approx(0.2)
    assert entry.embedding is not None  # the base's own embedding (router.embedder: base)


def test_batch_is_grouped_by_route_and_keeps_its_order(base, adapters, tmp_path):
    table = {FRANCE: (0.9, {}), HAMLET: (0.1, {"alpha": 0.9}), FOX: (0.1, {"beta": 0.9}), "Who?": (0.1, {})}
    moe = _moe(base, adapters, tmp_path, table, **{"router.min_match_score": 0.5})
    outs = moe.generate([FRANCE, HAMLET, FOX, "Who?", FOX])
    assert [o.route for o in outs] == ["base", "expert", "expert", "gap", "expert"]
    assert [o.experts for o in outs] == [[], [("alpha", 1.0)], [("beta", 1.0)], [], [("beta", 1.0)]]
    assert outs[2].text == outs[4].text == _alone(moe, "beta", [FOX])[0].text
    assert outs[1].text == _alone(moe, "alpha", [HAMLET])[0].text


def test_chat_messages_are_routed_by_the_last_user_message(base, adapters, tmp_path):
    moe = _moe(base, adapters, tmp_path, {FOX: (0.1, {"beta": 0.9})})
    chat = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"},
            {"role": "user", "content": FOX}]  # fmt: skip
    out = moe.generate(chat)
    assert isinstance(out, MoEOutput) and out.route == "expert" and out.experts == [("beta", 1.0)]
    assert out.text == _alone(moe, "beta", [chat])[0].text
    assert len(moe.generate([chat, FOX])) == 2


def test_router_matching_on_registered_example_questions(base, adapters, tmp_path):
    """The default UncertaintyRouter learns each expert from the questions given to add_expert."""
    moe = AdaptiveMoE(_config(tmp_path, **{"router.threshold": 1.0}), base=base)
    moe.add_expert(adapters["alpha"], "alpha", questions=[FRANCE, HAMLET])
    moe.add_expert(adapters["beta"], "beta", questions=[FOX])
    assert moe.router.experts == ["alpha", "beta"]
    assert moe.generate(FRANCE).experts == [("alpha", 1.0)]
    # a new process on the same workspace finds the router, its matcher and the experts again
    again = AdaptiveMoE(_config(tmp_path, **{"router.threshold": 1.0}), base=base)
    assert again.router.experts == ["alpha", "beta"] and again.generate(FRANCE).text == moe.generate(FRANCE).text
    assert again.router.terms.experts == ["alpha", "beta"]  # and each expert's words
    hamlet = again.router.terms.explain("Did Hamlet's author write sonnets?", "alpha")
    assert hamlet[0] == "hamlet" and 0 < hamlet[1] < 1  # a fairly common name: a partial tie
    (tmp_path / "ws" / "router" / "terms.json").unlink()  # a router saved before it matched words
    older = AdaptiveMoE(_config(tmp_path, **{"router.threshold": 1.0}), base=base)
    assert older.router.terms.experts == ["alpha", "beta"]  # learnt again from the cards
    assert (tmp_path / "ws" / "router" / "terms.json").is_file()
    moe.remove_expert("beta")
    assert moe.router.experts == ["alpha"] and moe.experts.names() == ["alpha"]
    assert moe.router.terms.experts == ["alpha"]


@pytest.mark.parametrize("term_match", [True, False])
def test_a_gap_naming_a_rare_word_of_a_new_expert_is_resolved_by_it(base, adapters, tmp_path, term_match):
    cfg = _config(tmp_path, **{"router.threshold": 1.0, "router.min_match_score": 0.99,
                               "router.override_match_score": None, "router.term_match": term_match})  # fmt: skip
    moe = AdaptiveMoE(cfg, base=base)
    assert moe.generate("What instrument does Margit play?").route == "gap"  # no expert yet
    moe.generate(FRANCE)
    assert len(moe.gaps) == 2
    moe.add_expert(adapters["alpha"], "letters", questions=["Where does Margit work on Tuesdays?"])
    # the tiny model's embeddings never reach 0.99; the name does, when words count
    assert moe.resolve_gaps("letters") == ([1] if term_match else [])
    assert moe.generate("Is Margit well?").route == ("expert" if term_match else "gap")


def test_forced_experts_and_unknown_names(base, adapters, tmp_path):
    moe = _moe(base, adapters, tmp_path, {FRANCE: (0.99, {})})
    out = moe.generate(FRANCE, experts=["beta"])
    assert out.route == "expert" and out.experts == [("beta", 1.0)] and "chosen by the caller" in out.reason
    with pytest.raises(UnknownNameError, match=r"unknown expert 'gamma'; registered: 'alpha', 'beta'") as info:
        moe.generate(FRANCE, experts=["gamma"])
    assert isinstance(info.value, KeyError)


@pytest.mark.parametrize(
    ("prompts", "settings", "error", "match"),
    [
        ("", {}, InvalidInputError, "empty"),
        ("   ", {}, InvalidInputError, "empty"),
        (42, {}, InvalidInputError, "got int"),
        ([], {}, InvalidInputError, "empty"),
        ([{"role": "robot", "content": "x"}], {}, InvalidInputError, "role 'robot' is not allowed"),
        (FRANCE, {"temperature": -1.0}, ConfigError, r"temperature: -1.0 is out of range; allowed: > 0"),
        (FRANCE, {"max_new_tokens": 0}, ConfigError, "max_new_tokens: 0 is out of range"),
        (FRANCE, {"top_p": 1.5}, ConfigError, "top_p: 1.5 is out of range"),
        (FRANCE, {"beams": 3}, InvalidInputError, r"unknown generation settings \['beams'\]; allowed: max_new_tokens"),
        (FRANCE, {"experts": []}, InvalidInputError, "give a list of registered expert names"),
    ],
)
def test_bad_input_gives_clear_errors(base, adapters, tmp_path, prompts, settings, error, match):
    moe = _moe(base, adapters, tmp_path)
    with pytest.raises(error, match=match) as info:
        moe.generate(prompts, **settings)
    assert isinstance(info.value, AdaptiveMoEError) and isinstance(info.value, ValueError)


def test_generation_settings_pass_through(base, adapters, tmp_path):
    moe = _moe(base, adapters, tmp_path, {FRANCE: (0.9, {})})
    out = moe.generate(FRANCE, max_new_tokens=3)
    assert len(out.signals.token_ids) <= 3
    a = moe.generate(FRANCE, temperature=1.5, seed=7, max_new_tokens=6)
    b = moe.generate(FRANCE, temperature=1.5, seed=7, max_new_tokens=6)
    assert a.text == b.text  # sampling (switched on by temperature) is reproducible under a seed


def test_low_confidence_expert_falls_back_then_abstains(base, adapters, tmp_path, monkeypatch):
    table = {FOX: (0.1, {"beta": 0.9, "alpha": 0.6})}
    moe = _moe(base, adapters, tmp_path, table, **{"integrator.expert_confidence_floor": 0.5})
    conf = {"beta": 0.2, "alpha": 0.8}
    monkeypatch.setattr(moe, "expert_confidence", lambda answer: conf[answer.experts[0][0]])
    out = moe.generate(FOX)
    assert out.route == "expert" and out.experts == [("alpha", 1.0)] and out.expert_confidence == 0.8
    assert [c["experts"][0][0] for c in out.candidates] == ["beta", "alpha"]
    assert out.text == _alone(moe, "alpha", [FOX])[0].text
    conf["alpha"] = 0.3
    out = moe.generate(FOX)
    assert out.route == "abstain" and out.text == "I don't know." and out.flagged and out.experts == []
    assert "abstaining" in out.reason
    best = _moe(base, adapters, tmp_path / "best", table, **{"integrator.expert_confidence_floor": 0.5,
                                                    "integrator.on_low_confidence": "best"})  # fmt: skip
    monkeypatch.setattr(best, "expert_confidence", lambda answer: conf[answer.experts[0][0]])
    out = best.generate(FOX)
    assert out.route == "expert" and out.flagged and out.experts == [("alpha", 1.0)]  # 0.3 > 0.2: alpha's answer


def test_mixture_of_one_adapter_under_two_names_is_that_adapter(base, adapters, tmp_path):
    moe = _moe(base, adapters, tmp_path, {FRANCE: (0.1, {"alpha": 0.9, "alpha2": 0.9})},
               **{"integrator.strategy": "mixture", "router.top_k": 2})  # fmt: skip
    moe.add_expert(adapters["alpha"], "alpha2", questions=[FRANCE])
    out = moe.generate(FRANCE)
    assert out.experts == [("alpha", 0.5), ("alpha2", 0.5)] and out.attribution.strategy == "mixture"
    assert out.text == _alone(moe, "alpha", [FRANCE])[0].text
    for t in out.attribution.tokens:
        assert t.weights == pytest.approx({"alpha": 0.5, "alpha2": 0.5}, abs=1e-5)


def test_mixture_mixes_the_experts_distributions(base, adapters, tmp_path):
    moe = _moe(base, adapters, tmp_path, {}, **{"integrator.strategy": "mixture"})
    outs = moe.generate([FRANCE, HAMLET], experts=["alpha", "beta"])
    for out, prompt in zip(outs, [FRANCE, HAMLET], strict=True):
        assert out.experts == [("alpha", 0.5), ("beta", 0.5)]
        # first token by hand: argmax of 0.5 p_alpha + 0.5 p_beta from separate forward passes
        probs = []
        for name in ("alpha", "beta"):
            with moe.pool.acquire([name]) as [e], base.adapter_host.activated(e.slot):
                from adaptive_moe.model.generation import encode_prompts

                batch, _ = encode_prompts(base, [prompt], moe.config.generation)
                batch.pop("attention_mask")
                probs.append(torch.softmax(base.model(**batch).logits[0, -1].float(), -1))
        mixed = 0.5 * probs[0] + 0.5 * probs[1]
        assert out.signals.token_ids[0] == int(mixed.argmax())
        assert float(out.signals.token_logprobs[0]) == pytest.approx(float(mixed.max().log()), abs=1e-4)
        share = 0.5 * probs[0][out.signals.token_ids[0]] / mixed.max()
        assert out.attribution.tokens[0].weights["alpha"] == pytest.approx(float(share), abs=1e-4)
        for t in out.attribution.tokens:
            assert all(0.0 <= w <= 1.0 for w in t.weights.values()) and sum(t.weights.values()) == pytest.approx(1)
        shares = out.attribution.sources
        mean_alpha = sum(t.weights["alpha"] for t in out.attribution.tokens) / len(out.attribution.tokens)
        assert shares["alpha"] == pytest.approx(mean_alpha) and sum(shares.values()) == pytest.approx(1.0)


def test_mixture_processor_samples_one_token_per_group():
    from adaptive_moe.config import GenerationConfig

    proc = MixtureLogitsProcessor([0.7, 0.3], False, GenerationConfig(do_sample=True, seed=3, top_k=5))
    scores = torch.randn(6, 50)  # 3 prompts x 2 experts
    out = proc(torch.zeros(6, 1, dtype=torch.long), scores)
    chosen = out.argmax(-1)
    assert torch.equal(chosen[0::2], chosen[1::2])  # both rows of a prompt carry the same token
    assert torch.isinf(out).sum() == 6 * 49
    assert proc.shares[0].shape == (3, 2) and torch.allclose(proc.shares[0].sum(-1), torch.ones(3))


def test_merge_is_built_once_and_cached(base, adapters, tmp_path):
    moe = _moe(base, adapters, tmp_path, {}, **{"integrator.strategy": "merge"})
    first = moe.generate(FRANCE, experts=["alpha", "beta"])
    name = merged_name([("alpha", 0.5), ("beta", 0.5)])
    assert name in moe.pool.extra_names and (tmp_path / "ws" / "cache" / "merged" / name).is_dir()
    assert first.attribution.sources == {"alpha": 0.5, "beta": 0.5} and first.attribution.strategy == "merge"
    again = moe.generate(FRANCE, experts=["alpha", "beta"])
    assert again.text == first.text and again.cache["hits"] == 1 and again.cache["misses"] == 0
    assert base.generate_with_signals(FRANCE, max_new_tokens=6)[0].text == moe.generate(FRANCE, experts=None).base_text


def test_merge_of_one_adapter_under_two_names_is_that_adapter(base, adapters, tmp_path):
    moe = _moe(base, adapters, tmp_path, {}, **{"integrator.strategy": "merge"})
    moe.add_expert(adapters["alpha"], "alpha2", questions=[FRANCE])
    merged = moe.generate(FRANCE, experts=["alpha", "alpha2"]).signals
    alone = _alone(moe, "alpha", [FRANCE])[0]
    assert merged.token_ids == alone.token_ids
    assert torch.allclose(merged.token_logprobs, alone.token_logprobs, atol=1e-4)


def test_stream_yields_the_answer_as_it_is_made(base, adapters, tmp_path):
    moe = _moe(base, adapters, tmp_path, {FOX: (0.1, {"beta": 0.9}), FRANCE: (0.9, {})})
    stream = moe.stream(FOX)
    pieces = list(stream)
    assert stream.output.route == "expert" and "".join(pieces).strip() == stream.output.text
    base_stream = moe.stream(FRANCE)
    assert "".join(base_stream) == base_stream.output.text and base_stream.output.route == "base"
    with pytest.raises(InvalidInputError, match="one prompt"):
        moe.stream([FOX, FRANCE])


def test_pre_mode_decides_before_generating(base, adapters, tmp_path):
    moe = _moe(base, adapters, tmp_path, {FOX: (0.1, {"beta": 0.9}), FRANCE: (0.9, {})}, **{"router.mode": "pre"})
    routed, kept = moe.generate([FOX, FRANCE])
    assert routed.route == "expert" and routed.base_text is None  # no base answer was generated for it
    assert kept.route == "base" and kept.text == base.generate_with_signals(FRANCE, max_new_tokens=6)[0].text
    stream = moe.stream(FOX)
    assert "".join(stream).strip() == stream.output.text


def test_pre_mode_decision_runs_only_the_configured_layers(base, adapters, tmp_path):
    moe = _moe(base, adapters, tmp_path, {FOX: (0.1, {"beta": 0.9}), FRANCE: (0.9, {})},
               **{"router.mode": "pre", "router.pre_layers": 1})  # fmt: skip
    blocks = base.model.model.layers
    ran: list[int] = []
    hook = blocks[-1].register_forward_hook(lambda *a: ran.append(1))
    try:
        routed, kept = moe.generate([FOX, FRANCE], max_new_tokens=1)
        assert routed.route == "expert" and kept.route == "base"
        calls_with_answers = len(ran)  # the base's and the expert's one-token generations
        ran.clear()
        moe.router.table = {FOX: (0.1, {"beta": 0.9}), FRANCE: (0.1, {"beta": 0.9})}
        moe.generate([FOX, FRANCE], max_new_tokens=1)
    finally:
        hook.remove()
    assert calls_with_answers == 2 and len(ran) == 1  # the decision itself never reached the last block


def test_save_and_load_give_the_same_answers(base, adapters, tmp_path):
    moe = AdaptiveMoE(_config(tmp_path, **{"router.threshold": 1.0}), base=base)
    moe.add_expert(adapters["alpha"], "alpha", questions=[FRANCE, HAMLET])
    moe.add_expert(adapters["beta"], "beta", questions=[FOX])
    before = [o.text for o in moe.generate([FRANCE, FOX, HAMLET])]
    moe.save_pretrained(tmp_path / "saved")
    loaded = AdaptiveMoE.from_pretrained(tmp_path / "saved", base=base)
    assert [o.text for o in loaded.generate([FRANCE, FOX, HAMLET])] == before
    assert loaded.experts.names() == ["alpha", "beta"] and loaded.router.experts == ["alpha", "beta"]
    with pytest.raises(FileExistsError):
        moe.save_pretrained(tmp_path / "saved")
    with pytest.raises(FileNotFoundError, match="holds no saved AdaptiveMoE"):
        AdaptiveMoE.from_pretrained(tmp_path / "nothing")


def test_threads_share_one_system(base, adapters, tmp_path):
    table = {FRANCE: (0.9, {}), HAMLET: (0.1, {"alpha": 0.9}), FOX: (0.1, {"beta": 0.9})}
    moe = _moe(base, adapters, tmp_path, table, **{"pool.capacity": 1})
    prompts = [FRANCE, HAMLET, FOX]
    expected = {p: moe.generate(p).text for p in prompts}
    results, errors = [], []

    def worker(i):
        try:
            for j in range(4):
                p = prompts[(i + j) % 3]
                results.append((p, moe.generate(p).text))
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 16
    assert all(text == expected[p] for p, text in results)


def test_config_selects_router_and_integrator_by_name(base, tmp_path):
    with pytest.raises(UnknownNameError, match=r"unknown router 'nope'; registered: .*'uncertainty'"):
        AdaptiveMoE(_config(tmp_path, **{"router.name": "nope"}), base=base)
    with pytest.raises(UnknownNameError, match="unknown integrator 'blend'; registered: 'merge', 'mixture', 'select'"):
        AdaptiveMoE(_config(tmp_path, **{"integrator.strategy": "blend"}), base=base)
    moe = AdaptiveMoE(_config(tmp_path), base=base)
    assert moe.router.name == "uncertainty" and moe.integrator.name == "select"
    assert isinstance(RouterConfig(), RouterConfig)


def test_close_unloads_the_experts_and_the_system_still_works(base, adapters, tmp_path):
    with _moe(base, adapters, tmp_path, {FOX: (0.1, {"beta": 0.9})}) as moe:
        first = moe.generate(FOX).text
        assert moe.pool.resident == ["beta"]
        slots = set(base.adapter_host.slots)
    assert moe.pool.resident == [] and moe.gaps is None
    assert base.adapter_host is None or not slots <= set(base.adapter_host.slots)  # beta's slot is gone
    assert moe.generate(FOX).text == first  # loads beta again on demand
    moe.close()
