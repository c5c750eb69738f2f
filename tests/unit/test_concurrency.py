"""Many threads at once: mixed base and expert requests, with a pool smaller than the experts in use,
give request for request the answers each request gets alone; threads writing one ledger and one
registry lose nothing (a tiny random model)."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig
from adaptive_moe.testing import make_random_adapter

EXPERTS = ["alpha", "beta", "gamma"]


def test_threads_with_a_small_pool_get_the_answers_each_request_gets_alone(tmp_path, tiny_llama_dir, tiny_base):
    cfg = AdaptiveMoEConfig().replace(
        workspace=str(tmp_path / "ws"),
        **{"model.name_or_path": str(tiny_llama_dir), "generation.max_new_tokens": 5, "router.embedder": "base",
           "integrator.expert_confidence_floor": 0.0, "pool.capacity": 2},  # three experts, room for two
    )  # fmt: skip
    with AdaptiveMoE(cfg, base=tiny_base) as moe:
        for i, name in enumerate(EXPERTS):
            moe.add_expert(make_random_adapter(tiny_base.model, tmp_path / name, seed=i + 1), name,
                           questions=[f"Question about {name}?"])  # fmt: skip
        rng = random.Random(0)
        requests = [(f"Tell me about item {i}.", rng.choice([None, *EXPERTS])) for i in range(24)]

        def ask(request):
            prompt, expert = request
            out = moe.generate(prompt, experts=[expert] if expert else None, record_gaps=False)
            return out.text, out.route, [n for n, _ in out.experts]

        alone = [ask(r) for r in requests]
        with ThreadPoolExecutor(6) as pool:
            together = list(pool.map(ask, requests))
        assert together == alone
        assert {tuple(e) for _, _, e in together} >= {(n,) for n in EXPERTS}  # every expert was used
        assert moe.pool.stats.evictions > 0  # the pool was too small: experts came and went


def test_threads_recording_gaps_and_importing_experts_lose_nothing(tmp_path, tiny_base):
    from adaptive_moe.experts import ExpertRegistry
    from adaptive_moe.gaps import GapLedger

    source = make_random_adapter(tiny_base.model, tmp_path / "src", seed=3)
    registry = ExpertRegistry(tmp_path / "registry")
    with GapLedger(tmp_path / "gaps.sqlite", max_entries=None) as ledger:

        def work(t):
            registry.import_adapter(source, f"e{t}", domain="threads")
            return [ledger.record(f"thread {t} gap {i}", request_id=f"t{t % 4}-{i}") for i in range(20)]

        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(work, range(8)))
        # threads t and t+4 send the same request ids: each id stored once, and both got its entry's id
        assert ledger.count() == 4 * 20 and all(ids[t] == ids[t + 4] for t in range(4))
    assert registry.names() == sorted(f"e{t}" for t in range(8))
    for name in registry.names():
        registry.verify(name)
