"""The LRU expert pool on a tiny model: eviction order, capacity by count and bytes, pins and in-use
experts, hot-swap, memory release, compatibility, purity of the base route, and threads."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest
import torch
from peft import PeftModel

from adaptive_moe import load_base_model
from adaptive_moe.errors import (
    CorruptExpertError,
    IncompatibleExpertError,
    InvalidInputError,
    ModelBusyError,
    UnknownNameError,
)
from adaptive_moe.experts import Expert, ExpertCard, ExpertPool, ExpertRegistry, PoolStats
from adaptive_moe.model.adapters import attached_adapter
from adaptive_moe.testing import make_random_adapter

QUESTIONS = ["What is the capital of France?", "Who wrote Hamlet?"]
GEN = {"max_new_tokens": 6}


@pytest.fixture(scope="module")
def base(tiny_llama_dir):
    return load_base_model(name_or_path=str(tiny_llama_dir), device="cpu")


@pytest.fixture(scope="module")
def adapter_dirs(base, tmp_path_factory):
    root = tmp_path_factory.mktemp("pool-adapters")
    dirs = {f"e{i}": make_random_adapter(base.model, root / f"e{i}", seed=10 + i) for i in range(5)}
    dirs["rank8"] = make_random_adapter(base.model, root / "rank8", r=8, seed=20)
    dirs["qv"] = make_random_adapter(base.model, root / "qv", seed=21, target_modules=["q_proj", "v_proj"])
    return dirs


@pytest.fixture(scope="module")
def registry(base, adapter_dirs, tmp_path_factory):
    reg = ExpertRegistry(tmp_path_factory.mktemp("pool-registry"))
    for name, folder in adapter_dirs.items():
        reg.import_adapter(folder, name, domain=f"domain of {name}", base=base)
    return reg


@pytest.fixture(scope="module")
def reference(base, adapter_dirs):
    """What each adapter answers when attached alone with plain PEFT (and what the base answers)."""
    out = {None: _answers(base.generate_with_signals(QUESTIONS, **GEN))}
    for name, folder in adapter_dirs.items():
        with attached_adapter(base, folder):
            out[name] = _answers(base.generate_with_signals(QUESTIONS, **GEN))
    return out


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


def _answers(signals):
    return [(s.text, s.token_logprobs) for s in signals]


def _same(a, b):
    return len(a) == len(b) and all(x[0] == y[0] and torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=True))


def _use(pool, name):
    with pool.acquire([name]) as [expert]:
        return _answers(expert.generate(QUESTIONS, **GEN))


def test_every_adapter_changes_the_answers(reference):
    assert all(not _same(reference[name], reference[None]) for name in reference if name is not None)


def test_lru_eviction_order_and_stats(pool, reference):
    p = pool(capacity=2)
    for name in ["e0", "e1", "e0", "e2"]:  # e1 is least recently used when e2 arrives
        assert _same(_use(p, name), reference[name])
    assert p.resident == ["e0", "e2"]
    s = p.stats
    assert (s.hits, s.misses, s.evictions, s.hotswaps) == (1, 3, 1, 1)
    assert s.resident == ("e0", "e2") and s.hit_rate == 0.25 and s.load_ms > 0
    assert s.resident_bytes == 2 * p._entries["e0"].bytes > 0 and (s.rss_bytes is None or s.rss_bytes > 0)
    before = p.stats
    _use(p, "e0")
    delta = p.stats - before
    assert (delta.hits, delta.misses, delta.evictions) == (1, 0, 0) and delta.resident == ("e2", "e0")
    assert isinstance(delta, PoolStats) and "hit_rate" in delta.to_dict()


def test_every_route_matches_plain_peft_and_the_base_stays_pure(base, pool, reference):
    p = pool(capacity=2)
    sequence = ["e0", "e1", "rank8", "e0", "qv", "e2", "e3", "rank8", "e4", "qv", "e0"]
    for name in sequence:  # mixes hot-swaps (same shapes) and new slots (other rank, other modules)
        assert _same(_use(p, name), reference[name]), name
        assert _same(_answers(base.generate_with_signals(QUESTIONS, **GEN)), reference[None])
    assert p.stats.hotswaps >= 3 and p.stats.misses == len(sequence)


def test_capacity_by_bytes(pool, registry):
    one = registry.card("e0").weights_bytes
    p = pool(capacity=10, max_bytes=int(2.5 * one))
    for name in ["e0", "e1", "e2", "e3"]:
        _use(p, name)
        assert p.resident_bytes <= 2.5 * one
    assert p.resident == ["e2", "e3"]
    with pytest.raises(InvalidInputError, match="max_bytes"):
        pool(capacity=2, max_bytes=one // 2).prefetch("e0")


def test_pinned_experts_are_never_evicted(pool):
    p = pool(capacity=2)
    p.pin("e0")
    for name in ["e1", "e2", "e3", "e1"]:
        _use(p, name)
        assert "e0" in p.resident
    with pytest.raises(ModelBusyError, match="pinned"):
        p.evict("e0")
    p.unpin("e0")
    _use(p, "e2")
    _use(p, "e3")
    assert "e0" not in p.resident


def test_in_use_experts_are_never_evicted(pool, reference):
    p = pool(capacity=1)
    with p.acquire(["e0"]) as [first]:
        with p.acquire(["e1"]) as [second]:  # no idle expert to evict: the pool overflows
            assert p.resident == ["e0", "e1"] and p.stats.overflows == 1
            assert _same(_answers(second.generate(QUESTIONS, **GEN)), reference["e1"])
        assert _same(_answers(first.generate(QUESTIONS, **GEN)), reference["e0"])
        with pytest.raises(ModelBusyError, match="in use"):
            p.evict("e0")
        with pytest.raises(ModelBusyError, match="in use"):
            p.clear()
    assert p.resident == ["e0"] or p.resident == ["e1"]
    assert len(p) == 1


def test_acquire_several_at_once(pool, reference):
    p = pool(capacity=3)
    with p.acquire(["e0", "qv", "e1"]) as experts:
        assert [e.name for e in experts] == ["e0", "qv", "e1"]
        assert all(_same(_answers(e.generate(QUESTIONS, **GEN)), reference[e.name]) for e in experts)
    with pytest.raises(InvalidInputError, match="capacity is 3"), p.acquire(["e0", "e1", "e2", "e3"]):
        pass
    with pytest.raises(InvalidInputError, match="at least one"), p.acquire([]):
        pass


def test_unknown_and_invalid_names(pool):
    p = pool(capacity=2)
    with pytest.raises(UnknownNameError, match="'e0'") as err, p.acquire(["nope"]):
        pass
    assert isinstance(err.value, KeyError)
    with pytest.raises(InvalidInputError, match="expert name"):
        p.prefetch("../e0")
    assert p.resident == [] and p.stats.misses == 0


def test_eviction_releases_memory_and_the_last_one_unloads_the_layers(base, pool):
    p = pool(capacity=3)
    p.prefetch(["e0", "e1"])
    slot = p._entries["e0"].expert.slot
    lora_a = next(t for n, t in base.adapter_host.peft_model.named_parameters() if f"lora_A.{slot}." in n)
    gone = weakref.ref(lora_a)
    del lora_a
    p.evict("e0")
    gc.collect()
    assert gone() is None  # the weights are really freed, not just forgotten
    assert p.resident_bytes == p._entries["e1"].bytes
    p.evict("e1")
    assert base.adapter_host is None and p.resident_bytes == 0
    assert not any("lora" in n for n, _ in base.model.named_modules())
    assert all(not q.requires_grad for q in base.model.parameters())


def test_expert_outside_acquire_cannot_generate(pool):
    p = pool(capacity=1)
    with p.acquire(["e0"]) as [expert]:
        pass
    _use(p, "e1")  # e0 evicted
    with pytest.raises(ModelBusyError, match=r"pool\.acquire"):
        expert.generate(QUESTIONS)


def test_new_version_in_the_registry_is_picked_up(base, pool, registry, adapter_dirs, reference, tmp_path):
    reg = ExpertRegistry(tmp_path)
    reg.import_adapter(adapter_dirs["e0"], "moving", base=base)
    p = pool(capacity=2)
    p.registry = reg
    assert _same(_use(p, "moving"), reference["e0"])
    reg.import_adapter(adapter_dirs["e1"], "moving", base=base, new_version=True)
    assert _same(_use(p, "moving"), reference["e1"])
    assert p.stats.misses == 2 and p.stats.evictions == 1


def test_mismatched_or_corrupt_expert_raises_and_the_pool_goes_on(base, pool, registry, reference, tmp_path):
    import shutil

    reg = ExpertRegistry(tmp_path)
    for name in ("e0", "e1"):
        shutil.copytree(registry.path_of(name), tmp_path / name / "v1")
    reg.update_card("e1", base_fingerprint="0" * 64, base_name="another base")
    p = pool(capacity=2)
    p.registry = reg
    _use(p, "e0")
    with pytest.raises(IncompatibleExpertError, match="made for base another base"):
        _use(p, "e1")
    weights = reg.path_of("e1") / "adapter_model.safetensors"
    reg.update_card("e1", base_fingerprint=base.fingerprint)
    weights.write_bytes(weights.read_bytes()[:500])
    with pytest.raises(CorruptExpertError):
        _use(p, "e1")
    assert p.resident == ["e0"] and _same(_use(p, "e0"), reference["e0"])
    assert _same(_answers(base.generate_with_signals(QUESTIONS, **GEN)), reference[None])


def test_training_and_attaching_refuse_while_experts_are_resident(base, pool, adapter_dirs, tmp_path):
    from adaptive_moe.creation import train_lora

    p = pool(capacity=1)
    p.prefetch("e0")
    with pytest.raises(ModelBusyError, match=r"pool\.clear"):
        train_lora(base, ["some text"], tmp_path / "out", progress=False)
    with pytest.raises(ModelBusyError, match=r"pool\.clear"), attached_adapter(base, adapter_dirs["e1"]):
        pass
    p.clear()
    with attached_adapter(base, adapter_dirs["e1"]):
        pass


def test_plain_peft_adapter_gives_the_same_logits_through_the_pool(base, pool, adapter_dirs, tiny_llama_dir):
    ids = base.tokenizer(QUESTIONS[0], return_tensors="pt")
    fresh = load_base_model(name_or_path=str(tiny_llama_dir), device="cpu")
    with torch.no_grad():
        expected = PeftModel.from_pretrained(fresh.model, str(adapter_dirs["e2"])).eval()(**ids).logits
        p = pool(capacity=2)
        _use(p, "e0")  # e2 arrives by hot-swap into e0's slot
        p.prefetch("e1")
        with p.acquire(["e2"]) as [expert], base.adapter_host.activated(expert.slot):
            got = base.model(**ids).logits
        plain = base.model(**ids).logits
    assert torch.allclose(got, expected, atol=1e-6, rtol=0) and not torch.allclose(plain, expected)


class EchoExpert(Expert):
    """An in-memory expert with no weights: answers with its domain."""

    kind = "echo"

    def generate(self, prompts, generation=None, **overrides):
        prompts, _ = self.prepare_request(prompts, generation, **overrides)
        return [f"{self.domain}: {p}" for p in prompts]


def test_in_memory_experts_of_other_kinds(pool):
    p = pool(capacity=2)
    p.add(EchoExpert(ExpertCard("echo", domain="parrots")))
    with p.acquire(["echo", "e0"]) as [echo, lora]:
        assert echo.generate("hi") == ["parrots: hi"] and lora.is_loaded
    assert p.resident_bytes == p._entries["e0"].bytes  # the echo expert holds nothing


def test_threads_through_different_experts_get_what_they_get_alone(pool, reference):
    p = pool(capacity=2)
    names = ["e0", "e1", "e2", "qv", "rank8"]
    results: dict[str, list] = {n: [] for n in names}
    errors = []
    start = threading.Barrier(len(names))

    def worker(name):
        try:
            start.wait()
            for _ in range(3):
                results[name].append(_use(p, name))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    for name in names:
        assert len(results[name]) == 3 and all(_same(r, reference[name]) for r in results[name]), name
    assert len(p.resident) <= 2 and p.stats.requests == 15
