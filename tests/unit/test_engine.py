"""The decoding engine (continuous batching, ``adaptive_moe.model.engine``) on tiny models: the same answers
as ``generate`` (greedy, stop strings, lengths, log-probabilities, prompt states), batches from many threads
decoded together with rows of different adapters in one forward, seeded sampling that does not depend on
what else runs, streaming, cancellation, errors that reach their caller only, what it refuses, and the facade
answering through it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig, load_base_model
from adaptive_moe.errors import AdaptiveMoEError
from adaptive_moe.experts.host import AdapterHost
from adaptive_moe.model.engine import DecodeEngine, EngineUnsupportedError
from adaptive_moe.model.generation import cancellable
from adaptive_moe.testing import make_random_adapter

PROMPTS = ["What is the capital of France?", "Who wrote Hamlet?", "x", "Name three rivers of Europe, please."]


@pytest.fixture(scope="module")
def base(tiny_llama_dir):
    return load_base_model(name_or_path=str(tiny_llama_dir), device="cpu")


@pytest.fixture(scope="module")
def slots(base, tmp_path_factory):
    root = tmp_path_factory.mktemp("engine-adapters")
    folders = [make_random_adapter(base.model, root / f"a{i}", seed=50 + i, scale=0.3) for i in range(2)]
    host = AdapterHost.of(base)  # after writing the adapters: make_random_adapter unloads what PEFT injected
    return [host.add(folder) for folder in folders]


@pytest.fixture
def engine(base):
    engine = DecodeEngine(base, max_rows=6)
    base.engine = engine
    yield engine
    base.engine = None
    engine.stop(30)
    assert not engine.alive


def _answers(base, slot=None, prompts=PROMPTS, **settings):
    settings.setdefault("max_new_tokens", 8)
    if slot is None:
        return base.generate_with_signals(prompts, **settings)
    with base.adapter_host.activated(slot):
        return base.generate_with_signals(prompts, **settings)


def _same(a, b, logprobs=1e-5):
    assert [s.token_ids for s in a] == [s.token_ids for s in b]
    assert [(s.text, s.finish_reason, s.prompt_tokens) for s in a] == [(s.text, s.finish_reason, s.prompt_tokens)
                                                                        for s in b]  # fmt: skip
    for x, y in zip(a, b, strict=True):
        assert torch.allclose(x.token_logprobs, y.token_logprobs, atol=logprobs)
        assert torch.allclose(x.prompt_hidden, y.prompt_hidden, atol=1e-5)
        assert torch.allclose(x.query_hidden, y.query_hidden, atol=1e-5)
        assert (x.top_ids is None) == (y.top_ids is None) == (x.num_tokens == 0)
        assert x.top_ids is None or torch.equal(x.top_ids[:, :3], y.top_ids[:, :3])


@pytest.mark.parametrize("settings", [{}, {"max_new_tokens": 1}, {"max_new_tokens": 13}, {"stop": ["a", "e"]},
                                      {"repetition_penalty": 1.3}])  # fmt: skip
def test_the_engine_answers_as_generate_does(base, slots, settings):
    expected = {slot: _answers(base, slot, **settings) for slot in [None, *slots]}
    engine = DecodeEngine(base)
    base.engine = engine
    try:
        for slot, answers in expected.items():
            _same(_answers(base, slot, **settings), answers)
    finally:
        base.engine = None
        engine.stop(30)
    assert engine.batches == 3 * len(PROMPTS)  # independent rows are decoded as batches of one
    assert (engine.steps > 0) == (settings.get("max_new_tokens") != 1)  # one token: the prefill gives it


def test_threads_share_forwards_across_adapters_and_get_their_solo_answers(base, slots, engine):
    solo_engine, engine.on_step = [], lambda rows, seconds: solo_engine.append(rows)
    expected = {}
    for slot in [None, *slots]:  # one at a time through the engine: each forward holds one batch
        expected[slot] = [_answers(base, slot, prompts=[p]) for p in PROMPTS]
    assert engine.mixed_steps == 0 and max(solo_engine) == 1
    jobs = [(slot, i) for _ in range(3) for slot in [None, *slots] for i in range(len(PROMPTS))]
    start = threading.Barrier(8)

    def ask(job):
        slot, i = job
        if jobs.index(job) < 8:
            start.wait(30)
        return _answers(base, slot, prompts=[PROMPTS[i]])

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(ask, jobs))
    for (slot, i), answer in zip(jobs, got, strict=True):
        _same(answer, expected[slot][i], logprobs=1e-4)
    assert engine.mixed_steps > 0  # base and expert rows, or two experts' rows, in one forward
    assert max(solo_engine) > 1 and max(solo_engine) <= engine.max_rows


def test_a_seeded_sample_does_not_depend_on_what_else_runs(base, engine):
    settings = {"do_sample": True, "temperature": 1.5, "top_p": 0.95, "top_k": 50, "seed": 7, "max_new_tokens": 10}
    alone = _answers(base, prompts=[PROMPTS[0]], **settings)[0].token_ids
    greedy = _answers(base, prompts=[PROMPTS[0]], max_new_tokens=10)[0].token_ids
    with ThreadPoolExecutor(4) as pool:
        crowd = [f.result() for f in [pool.submit(_answers, base, prompts=[PROMPTS[0]], **settings)] +
                 [pool.submit(_answers, base, prompts=PROMPTS, max_new_tokens=10) for _ in range(3)]]  # fmt: skip
    assert crowd[0][0].token_ids == alone
    other_seed = _answers(base, prompts=[PROMPTS[0]], **{**settings, "seed": 8})[0].token_ids
    assert alone != greedy or other_seed != alone  # it samples: the seed matters


def test_a_streamer_gets_the_prompt_then_each_token(base, engine):
    class Recorder:
        def __init__(self):
            self.puts, self.ended = [], False

        def put(self, value):
            self.puts.append(value.tolist())

        def end(self):
            self.ended = True

    recorder = Recorder()
    out = base.generate_with_signals(PROMPTS[:1], streamer=recorder, max_new_tokens=6)[0]
    assert recorder.ended and len(recorder.puts[0]) == 1 and len(recorder.puts[0][0]) == out.prompt_tokens
    assert [t for [t] in recorder.puts[1 : 1 + out.num_tokens]] == out.token_ids


def test_a_cancelled_batch_stops_at_the_next_token_and_others_go_on(base, engine):
    calls = {"n": 0}

    def cancelled():
        calls["n"] += 1
        return calls["n"] > 3

    full = _answers(base, prompts=PROMPTS[:1], max_new_tokens=30)[0]
    with ThreadPoolExecutor(2) as pool:
        other = pool.submit(_answers, base, prompts=PROMPTS[:1], max_new_tokens=30)

        def stopped():
            with cancellable(cancelled):
                return _answers(base, prompts=PROMPTS[:1], max_new_tokens=30)[0]

        cut = pool.submit(stopped).result()
    assert cut.finish_reason == "cancelled" and cut.num_tokens < full.num_tokens
    assert other.result()[0].token_ids == full.token_ids


def test_a_failing_batch_fails_its_caller_only(base, engine):
    bad = torch.tensor([[10**6]])  # an id past the vocabulary: the forward raises
    with pytest.raises(IndexError):
        engine.generate(bad, torch.ones_like(bad), {"max_new_tokens": 3, "eos_token_id": None, "pad_token_id": 0})
    _same(_answers(base, prompts=PROMPTS[:2]), _answers(base, prompts=PROMPTS[:2]))
    assert engine.alive


def test_what_the_engine_refuses(base, tiny_gpt2_dir):
    with pytest.raises(AdaptiveMoEError, match="max_rows"):
        DecodeEngine(base, max_rows=0)
    base.model.generation_config.no_repeat_ngram_size = 2
    try:
        with pytest.raises(EngineUnsupportedError, match="no_repeat_ngram_size"):
            DecodeEngine(base)
    finally:
        base.model.generation_config.no_repeat_ngram_size = None
    stopped = DecodeEngine(base)
    stopped.stop(30)
    with pytest.raises(AdaptiveMoEError, match="stopped"):
        stopped.generate(torch.tensor([[1, 2]]), torch.ones(1, 2, dtype=torch.long), {"max_new_tokens": 2})


def test_gpt2_answers_as_generate_does(tiny_gpt2_dir):
    gpt2 = load_base_model(name_or_path=str(tiny_gpt2_dir), device="cpu")
    expected = gpt2.generate_with_signals(PROMPTS, max_new_tokens=6)
    gpt2.engine = DecodeEngine(gpt2)
    try:
        _same(gpt2.generate_with_signals(PROMPTS, max_new_tokens=6), expected)
    finally:
        gpt2.engine.stop(30)
        gpt2.engine = None


def test_the_facade_routes_through_the_engine_with_the_same_answers(base, slots, tiny_llama_dir, tmp_path):
    writer = load_base_model(name_or_path=str(tiny_llama_dir), device="cpu")  # not `base`: its adapters stay put
    folder = make_random_adapter(writer.model, tmp_path / "beta", seed=61, scale=0.3)
    cfg = AdaptiveMoEConfig().replace(workspace=str(tmp_path / "ws"), **{
        "model.name_or_path": "unused", "generation.max_new_tokens": 6, "router.embedder": "base",
        "integrator.expert_confidence_floor": 0.0, "integrator.merged_fast_path": True,
        "gaps.enabled": False})  # fmt: skip
    moe = AdaptiveMoE(cfg, base=base)
    try:
        moe.add_expert(folder, "beta", questions=["Who founded the Kovane guild?"])
        asks = [(q, e) for q in PROMPTS for e in (None, ["beta"])]
        expected = [moe.generate(q, experts=e, record_gaps=False) for q, e in asks]
        engine = DecodeEngine(base)
        base.engine = engine
        try:
            with ThreadPoolExecutor(4) as pool:
                got = list(pool.map(lambda a: moe.generate(a[0], experts=a[1], record_gaps=False), asks))
        finally:
            base.engine = None
            engine.stop(30)
        assert [(o.text, o.route) for o in got] == [(o.text, o.route) for o in expected]
        assert sum(o.route == "expert" for o in got) == len(PROMPTS)
        assert engine.batches == len(asks) + len(PROMPTS)  # every base pass and every expert answer went through it
    finally:
        moe.close()


def test_a_shared_prompt_prefix_is_computed_once_and_answers_stay_the_same(base, slots, engine):
    system = "You are a careful assistant. Answer in one short sentence, and say so when you do not know."
    expected = {slot: _answers(base, slot, system_prompt=system) for slot in (None, slots[0])}
    base.engine = None
    try:
        plain = {slot: _answers(base, slot, system_prompt=system) for slot in (None, slots[0])}
    finally:
        base.engine = engine
    assert engine.prefix_builds == 1 and len(engine._prefix_ids) >= engine.min_prefix  # the template's system turn
    for slot in (None, slots[0]):  # an expert's rows never use the base's keys and values
        _same(expected[slot], plain[slot], logprobs=1e-4)
    again = [_answers(base, prompts=[p], system_prompt=system)[0] for p in PROMPTS]
    _same(again, plain[None], logprobs=1e-4)
    assert engine.prefix_builds == 1
    other = "Another instruction entirely: be brief and factual in every single answer you give."
    _answers(base, prompts=PROMPTS[:2], system_prompt=other)
    assert engine.prefix_builds == 2  # a new shared prefix replaces the old one


def test_the_model_lock_counts_its_waiters_and_serves_a_condition(base):
    lock = base.lock
    done = threading.Event()
    with lock:
        waiter = threading.Thread(target=lambda: (lock.acquire(), lock.release(), done.set()))
        waiter.start()
        for _ in range(200):
            if lock.waiting:
                break
            threading.Event().wait(0.01)
        assert lock.waiting == 1 and not done.is_set()
    waiter.join(10)
    assert done.is_set() and lock.waiting == 0
    condition = threading.Condition(lock)
    with lock, lock:  # re-entered: waiting releases every level, so another thread can take it
        threading.Thread(target=lambda: (lock.acquire(), condition.notify_all(), lock.release())).start()
        assert condition.wait(10)
        assert lock._is_owned()
