"""The merged fast path (``AdapterHost.merged``, ``integrator.merged_fast_path``) on tiny models: the
same answers as the unmerged adapter, the base exactly restored (the very weight objects), the cache
of merged weights (reused, invalidated by hot-swap, remove and unload), threads, the facade, GPT-2's
``Conv1D`` layers and the fallback on a quantized base."""

from __future__ import annotations

import gc
import logging
import threading
import weakref

import pytest
import torch
from conftest import require

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig, load_base_model
from adaptive_moe.config import IntegratorConfig
from adaptive_moe.errors import ModelBusyError
from adaptive_moe.experts import ExpertPool, ExpertRegistry
from adaptive_moe.experts.host import AdapterHost
from adaptive_moe.integration import SelectIntegrator
from adaptive_moe.routing import Router, RouteScores, register_router
from adaptive_moe.testing import make_random_adapter

QUESTIONS = ["What is the capital of France?", "Who wrote Hamlet?"]
GEN = {"max_new_tokens": 6}
GEN_CFG = AdaptiveMoEConfig().generation.replace(**GEN)
FAST = IntegratorConfig(merged_fast_path=True)


@pytest.fixture(scope="module")
def base(tiny_llama_dir):
    return load_base_model(name_or_path=str(tiny_llama_dir), device="cpu")


@pytest.fixture(scope="module")
def adapter_dirs(base, tmp_path_factory):
    root = tmp_path_factory.mktemp("merged-adapters")
    dirs = {f"e{i}": make_random_adapter(base.model, root / f"e{i}", r=16, scale=0.2, seed=30 + i) for i in range(2)}
    dirs["qv"] = make_random_adapter(base.model, root / "qv", seed=40, target_modules=["q_proj", "v_proj"])
    return dirs


@pytest.fixture(scope="module")
def registry(base, adapter_dirs, tmp_path_factory):
    reg = ExpertRegistry(tmp_path_factory.mktemp("merged-registry"))
    for name, folder in adapter_dirs.items():
        reg.import_adapter(folder, name, domain=f"domain of {name}", base=base)
    return reg


@pytest.fixture
def pool(base, registry):
    pools = []

    def make(**kwargs):
        pools.append(ExpertPool(base, registry, **kwargs))
        return pools[-1]

    yield make
    for p in pools:
        p.clear()
    assert base.adapter_host is None  # every test leaves the base plain


@pytest.fixture(scope="module")
def reference(base, registry):
    """Unmerged answers of every expert, and the base's, each generated alone."""
    p = ExpertPool(base, registry, capacity=3)
    out = {None: base.generate_with_signals(QUESTIONS, **GEN)}
    for name in ("e0", "e1", "qv"):
        with p.acquire([name]) as [expert]:
            out[name] = expert.generate(QUESTIONS, **GEN)
    p.clear()
    return out


def _merged(expert, keep=1):
    with expert.base.adapter_host.merged(expert.slot, keep=keep):
        return expert.generate(QUESTIONS, **GEN)


def _close(got, want):
    """Merged against unmerged: the same tokens, log-probs equal up to float rounding."""
    return all(
        g.token_ids == w.token_ids and torch.allclose(g.token_logprobs, w.token_logprobs, atol=1e-4, rtol=0)
        for g, w in zip(got, want, strict=True)
    )


def _exact(got, want):
    return all(
        g.text == w.text and g.token_ids == w.token_ids and torch.equal(g.token_logprobs, w.token_logprobs)
        for g, w in zip(got, want, strict=True)
    )


def _logits(base):
    ids = base.tokenizer(QUESTIONS[0], return_tensors="pt")
    with torch.no_grad():
        return base.model(**ids).logits


def _base_weights(host, slot):
    return {id(layer): layer.get_base_layer().weight for layer in host._layers[slot]}


def test_every_adapter_changes_the_answers(reference):
    assert all(not _exact(reference[n], reference[None]) for n in ("e0", "e1", "qv"))


def test_merged_answers_equal_unmerged_answers(pool, reference):
    p = pool(capacity=2)
    for name in ("e0", "qv"):
        with p.acquire([name]) as [expert]:
            assert _close(_merged(expert), reference[name]), name
            assert _exact(expert.generate(QUESTIONS, **GEN), reference[name])  # unmerged again afterwards


def test_the_base_is_exactly_restored_after_the_block(base, pool):
    p = pool(capacity=2)
    with p.acquire(["e0"]) as [expert]:
        host = base.adapter_host
        before, weights = _logits(base), _base_weights(host, expert.slot)
        with host.merged(expert.slot):
            layers = host._layers[expert.slot]
            assert all(layer.get_base_layer().weight is not weights[id(layer)] for layer in layers)
            assert all(layer.disable_adapters for layer in layers)  # the LoRA path is not added on top
            assert not torch.equal(_logits(base), before)
        assert all(layer.get_base_layer().weight is weights[id(layer)] for layer in layers)
        assert torch.equal(_logits(base), before)
    assert all(not q.requires_grad for q in base.model.parameters())


def test_the_cache_is_reused_and_reports_its_bytes(base, pool, reference):
    p = pool(capacity=3)
    with p.acquire(["e0", "e1"]) as [e0, e1]:
        host = base.adapter_host
        assert _close(_merged(e0), reference["e0"]) and (host.merges, host.merge_hits) == (1, 0)
        assert _close(_merged(e0), reference["e0"]) and (host.merges, host.merge_hits) == (1, 1)  # no new merge
        adapted = sum(layer.get_base_layer().weight.nbytes for layer in host._layers[e0.slot])
        assert host.merged_bytes == adapted > 0 and p.stats.merged_bytes == adapted
        _merged(e1)  # keep=1: e1's weights replace e0's
        assert host.merged_slots == [e1.slot] and host.merges == 2
        _merged(e0, keep=2)
        _merged(e1, keep=2)
        assert host.merged_slots == [e0.slot, e1.slot] and host.merges == 3 and host.merged_bytes == 2 * adapted
        host.drop_merged(e0.slot)
        assert host.merged_slots == [e1.slot]


def test_a_hot_swapped_slot_answers_with_its_new_adapter(base, pool, reference):
    p = pool(capacity=1)
    with p.acquire(["e0"]) as [e0]:
        slot = e0.slot
        assert _close(_merged(e0), reference["e0"]) and base.adapter_host.merged_slots == [slot]
    with p.acquire(["e1"]) as [e1]:  # same shapes: copied into e0's slot
        assert e1.slot == slot and p.stats.hotswaps == 1
        assert base.adapter_host.merged_slots == []
        assert _close(_merged(e1), reference["e1"]) and base.adapter_host.merges == 2


def test_remove_and_unload_free_the_merged_weights(base, pool, reference):
    p = pool(capacity=3)
    p.prefetch(["e0", "qv"])
    host = base.adapter_host
    with p.acquire(["e0"]) as [e0]:
        _merged(e0, keep=2)
    with p.acquire(["qv"]) as [qv]:
        _merged(qv, keep=2)
    merged = weakref.ref(host._merged[qv.slot][0][1])
    p.evict("e0")
    assert host.merged_slots == [qv.slot]
    p.clear()  # the last slot goes: the host unloads
    gc.collect()
    assert base.adapter_host is None and host.merged_bytes == 0 and merged() is None


def test_misuse_inside_the_block_is_refused_and_the_base_survives(base, pool, reference):
    p = pool(capacity=2)
    with p.acquire(["e0", "qv"]) as [e0, qv]:
        host = base.adapter_host
        before, weights = _logits(base), _base_weights(host, e0.slot)
        with host.merged(e0.slot):
            for enter in (lambda: host.activated(qv.slot), lambda: host.merged(qv.slot), lambda: host.mixed([qv.slot])):
                with pytest.raises(ModelBusyError, match="merged into the base weights"), enter():
                    pass
            with pytest.raises(ModelBusyError, match="merged"):
                host.remove(qv.slot)
            with host.merged(e0.slot), host.activated(e0.slot):  # re-entered: nothing changes
                pass
            assert _close(e0.generate(QUESTIONS, **GEN), reference["e0"])
        with host.activated(qv.slot):  # merged inside another activation: that one is back afterwards
            with host.merged(e0.slot):
                assert _close(e0.generate(QUESTIONS, **GEN), reference["e0"])
            assert _exact(base.generate_with_signals(QUESTIONS, **GEN), reference["qv"])
        assert all(layer.get_base_layer().weight is weights[id(layer)] for layer in host._layers[e0.slot])
        assert torch.equal(_logits(base), before)


def test_threads_alternating_base_and_merged_experts_get_their_solo_outputs(base, pool, reference):
    p = pool(capacity=2)
    select = SelectIntegrator(FAST, p)
    solo = {n: [a.signals for a in select.generate(QUESTIONS, [(n, 1.0)], GEN_CFG)] for n in ("e0", "e1")}
    assert _close(solo["e0"], reference["e0"]) and _close(solo["e1"], reference["e1"])
    errors, results = [], {i: [] for i in range(4)}
    start = threading.Barrier(4)

    def worker(i):
        try:
            start.wait()
            for step in range(4):
                if (i + step) % 2:
                    results[i].append(("base", base.generate_with_signals(QUESTIONS, **GEN)))
                else:
                    name = f"e{i % 2}"
                    results[i].append((name, [a.signals for a in select.generate(QUESTIONS, [(name, 1.0)], GEN_CFG)]))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    for i in range(4):
        assert len(results[i]) == 4
        for name, got in results[i]:
            assert _exact(got, reference[None] if name == "base" else solo[name]), (i, name)


@register_router
class TableRouter(Router):
    """Confidence and match scores chosen by the test, per query text."""

    name = "table_for_merged_tests"
    table: dict = {}  # noqa: RUF012 - set by the test

    def score(self, query):
        conf, scores = self.table.get(query.text, (0.0, {}))
        return RouteScores(conf, dict(scores))


def test_the_facade_answers_the_same_with_the_fast_path(base, adapter_dirs, tmp_path):
    TableRouter.table = {QUESTIONS[0]: (0.1, {"e0": 0.9}), QUESTIONS[1]: (0.1, {"e1": 0.9}), "Hi": (0.9, {})}
    texts = {}
    for fast in (False, True):
        cfg = AdaptiveMoEConfig().replace(
            workspace=str(tmp_path / f"ws-{fast}"),
            **{"generation.max_new_tokens": 6, "router.embedder": "base", "router.min_match_score": 0.0,
               "router.name": "table_for_merged_tests", "integrator.expert_confidence_floor": 0.0,
               "integrator.merged_fast_path": fast},
        )  # fmt: skip
        moe = AdaptiveMoE(cfg, base=base)
        moe.add_expert(adapter_dirs["e0"], "e0", questions=[QUESTIONS[0]])
        moe.add_expert(adapter_dirs["e1"], "e1", questions=[QUESTIONS[1]])
        outs = moe.generate([*QUESTIONS, "Hi", QUESTIONS[0]])
        assert [o.route for o in outs] == ["expert", "expert", "base", "expert"]
        texts[fast] = [o.text for o in outs]
        host = base.adapter_host
        assert host.merges == (2 if fast else 0) and moe.pool.stats.merged_bytes == (host.merged_bytes)
        moe.pool.clear()
    assert texts[True] == texts[False]


def test_gpt2_conv1d_layers_merge_transposed(tiny_gpt2_dir, tmp_path):
    gpt2 = load_base_model(name_or_path=str(tiny_gpt2_dir), device="cpu")
    host = AdapterHost.of(gpt2)
    slot = host.add(make_random_adapter(gpt2.model, tmp_path / "gpt2-lora", seed=3))
    assert any(layer.fan_in_fan_out for layer in host._layers[slot])
    before = _logits(gpt2)
    with host.activated(slot):
        unmerged = _logits(gpt2)
    with host.merged(slot):
        merged = _logits(gpt2)
    assert torch.allclose(merged, unmerged, atol=1e-4, rtol=0) and not torch.allclose(merged, before)
    assert torch.equal(_logits(gpt2), before)
    host.remove(slot)
    assert gpt2.adapter_host is None


def test_a_quantized_base_falls_back_to_the_unmerged_path(tiny_quant_dir, tmp_path, caplog):
    require("bitsandbytes")
    fp32 = load_base_model(name_or_path=str(tiny_quant_dir), device="cpu")
    folder = make_random_adapter(fp32.model, tmp_path / "quant-lora", seed=5)
    nf4 = load_base_model(name_or_path=str(tiny_quant_dir), device="cpu", precision="nf4")
    reg = ExpertRegistry(tmp_path / "reg")
    reg.import_adapter(folder, "q", base=nf4)
    p = ExpertPool(nf4, reg, capacity=1)
    try:
        with p.acquire(["q"]) as [expert]:
            unmerged = expert.generate(QUESTIONS, **GEN)
        with caplog.at_level(logging.DEBUG, logger="adaptive_moe.experts.host"):
            fast = [a.signals for a in SelectIntegrator(FAST, p).generate(QUESTIONS, [("q", 1.0)], GEN_CFG)]
        assert _exact(fast, unmerged) and not _exact(fast, nf4.generate_with_signals(QUESTIONS, **GEN))
        host = nf4.adapter_host
        assert host.merges == 0 and host.merged_bytes == 0 and "runs unmerged" in caplog.text
    finally:
        p.clear()
    assert nf4.adapter_host is None
