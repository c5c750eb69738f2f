"""The shared reader of retrieval experts: reading examples over invented entities, trained once per base
and kept in the workspace, copied into each expert; check questions from rule-made pairs and from the
``label: value`` lines of tables and lists (tiny random models)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig, load_base_model
from adaptive_moe.creation import reader as reader_module
from adaptive_moe.creation.pipeline import _check_questions
from adaptive_moe.creation.reader import EMBEDDED_READER_DIR, copy_reader, reader_for, synthetic_reading_examples
from adaptive_moe.creation.retrieval import key_value_questions
from adaptive_moe.documents import document_passages
from adaptive_moe.errors import UnknownNameError
from adaptive_moe.experts.retrieval import INDEX_FILE

SPEC = """# Widget W-3 manual

The Widget W-3 is made by Acme Ltd in Norwich.

## Specifications

| Item | Value |
|---|---|
| Weight | 340 g |
| Colour | green, with a grey lid |

- Battery life, standby: 1,200 hours (typical).
- This line is a sentence: with a colon but a label that runs on far too long to be one.
"""


@pytest.fixture(scope="module")
def base(tiny_llama_dir):
    return load_base_model(name_or_path=str(tiny_llama_dir), device="cpu")


@pytest.fixture
def short_examples(monkeypatch):
    """The tiny model's tokenizer spells most words letter by letter: reading examples short enough for it."""
    example = ("Passages:\n[1] Ada was born in Oslo.\n\nQuestion: Where was Ada born?", "Oslo")
    monkeypatch.setattr(reader_module, "synthetic_reading_examples", lambda *a, **k: [example] * 8)


def test_key_value_lines_become_check_questions():
    qs = key_value_questions(document_passages(SPEC, "manual.md"))
    assert ("What is the weight of the Widget W-3 manual?", ["340 g"]) in qs
    assert ("What is the colour of the Widget W-3 manual?", ["green"]) in qs  # the value's first clause
    assert ("What is the battery life, standby of the Widget W-3 manual?", ["1,200 hours"]) in qs  # 1,200 kept whole
    assert not any("sentence" in q for q, _ in qs) and not any("made by" in q for q, _ in qs)


def test_synthetic_reading_examples_hold_their_answer():
    examples = synthetic_reading_examples(20, passages=2, seed=1)
    assert len(examples) == 20 and len({p for p, _ in examples}) == 20
    for prompt, answer in examples:
        assert prompt.count("\n[") == 2 and answer in prompt.split("Question:")[0]
    assert synthetic_reading_examples(20, passages=2, seed=1) == examples


def test_check_questions_keep_the_users_and_spread_the_rest():
    data = SimpleNamespace(heldout=[("r1?", ["a"]), ("u1?", ["b"])], qa_pairs=[(f"q{i}?", f"a{i}") for i in range(10)],
                           stats={"user_heldout_questions": 1})  # fmt: skip

    out = _check_questions(data, [("kv?", ["v"]), ("q0?", ["dup"])], limit=5)
    assert out[0] == ("u1?", ["b"]) and len(out) == 5
    assert len({q for q, _ in out}) == 5 and out[1] == ("q0?", ["a0"])
    assert len(_check_questions(data, [], limit=100)) == 12  # 10 pairs + r1 + u1, no duplicate


def test_a_reader_is_trained_once_per_base_and_kept(base, tmp_path, monkeypatch, short_examples):
    folder = reader_for(base, tmp_path, steps=2, progress=False)
    assert folder == tmp_path / "readers" / base.fingerprint[:16] and folder != EMBEDDED_READER_DIR
    fit = json.loads((folder / "fit.json").read_text())
    assert fit["base_fingerprint"] == base.fingerprint and fit["steps"] == 2
    monkeypatch.setattr(reader_module, "train_reader", lambda *a, **k: pytest.fail("trained twice"))
    assert reader_for(base, tmp_path, steps=2, progress=False) == folder
    copy_reader(folder, tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").read_bytes() == (
        folder / "adapter_model.safetensors"
    ).read_bytes()
    record = json.loads((tmp_path / "adapter" / "adaptive_moe_training.json").read_text())
    assert record["reader_fit"]["base_fingerprint"] == base.fingerprint


def test_create_expert_with_the_shared_reader_trains_nothing_on_the_documents(
    base, tmp_path, monkeypatch, short_examples
):
    cfg = AdaptiveMoEConfig().replace(
        workspace=str(tmp_path / "ws"),
        **{"generation.max_new_tokens": 4, "router.embedder": "base", "router.threshold": 1.0,
           "router.min_match_score": 0.0, "integrator.expert_confidence_floor": 0.0, "creation.method": "retrieval",
           "creation.reader": "shared", "creation.reader_steps": 2, "creation.retrieval_top_k": 1,
           "creation.forced_general_questions": 2, "creation.domain_margin": 0.0, "creation.general_tolerance": 1.0},
    )  # fmt: skip
    general = [("What is the capital of France?", ["Paris"])] * 2
    with AdaptiveMoE(cfg, base=base) as moe:
        reader = reader_for(base, moe.config.workspace_path(), steps=2, progress=False)
        import adaptive_moe.creation.training as training

        monkeypatch.setattr(training, "train_lora", lambda *a, **k: pytest.fail("trained on the documents"))
        result = moe.create_expert("widget", documents=[SPEC], progress=False, general=general)
        assert result.admitted, result.reasons
        assert "judged by 'f1'" in result.reasons[0] and result.report.domain["scorer"] == "f1"
        # the rules find at most a fact here; the table's and list's lines check the expert
        assert result.data["check_questions"] >= 3 and result.data["passages"] >= 3
        folder = moe.experts.path_of("widget")
        assert (folder / INDEX_FILE).is_file()
        weights = "adapter_model.safetensors"
        assert (folder / weights).read_bytes() == (reader / weights).read_bytes()
        card = moe.experts.card("widget")
        assert card.kind == "retrieval" and card.extra["retrieval"]["reader"] == "shared"
        out = moe.generate("How heavy is the Widget W-3?", experts=["widget"])
        assert out.attribution.citations and len(out.attribution.citations) == 1


def test_a_question_model_runs_in_creation_and_its_count_is_recorded(base, tmp_path, short_examples):
    cfg = AdaptiveMoEConfig().replace(
        workspace=str(tmp_path / "ws"),
        **{"generation.max_new_tokens": 4, "router.embedder": "base", "router.threshold": 1.0,
           "router.min_match_score": 0.0, "integrator.expert_confidence_floor": 0.0, "creation.method": "retrieval",
           "creation.reader": "shared", "creation.reader_steps": 2, "creation.retrieval_top_k": 1,
           "creation.forced_general_questions": 2, "creation.domain_margin": 0.0, "creation.general_tolerance": 1.0,
           "creation.question_model": "base"},
    )  # fmt: skip
    general = [("What is the capital of France?", ["Paris"])] * 2
    with AdaptiveMoE(cfg, base=base) as moe:
        result = moe.create_expert("widget", documents=[SPEC], progress=False, general=general)
    # a random model's replies rarely pass the keep rule; the count is recorded either way
    assert result.data["generated_questions"] >= 0 and result.data["check_questions"] >= 3


def test_a_document_with_nothing_to_check_is_refused(base, tmp_path):
    cfg = AdaptiveMoEConfig().replace(workspace=str(tmp_path / "ws"),
                                      **{"creation.method": "retrieval", "creation.reader_steps": 2})  # fmt: skip
    with AdaptiveMoE(cfg, base=base) as moe:
        with pytest.raises(ValueError, match="no question to hold out"):
            moe.create_expert("empty", documents=["Hello there."], progress=False)
        assert "empty" not in moe.experts
    assert not (tmp_path / "ws" / "readers").exists()  # refused before any reader was trained


def test_an_unknown_check_scorer_is_refused_before_any_work(base, tmp_path):
    cfg = AdaptiveMoEConfig().replace(workspace=str(tmp_path / "ws"), **{"creation.check_scorer": "fuzzy"})
    with AdaptiveMoE(cfg, base=base) as moe:
        with pytest.raises(UnknownNameError, match=r"'fuzzy'.*'contains', 'exact', 'f1'"):
            moe.create_expert("widget", documents=[SPEC], progress=False)
        assert "widget" not in moe.experts and not (tmp_path / "ws" / "creating" / "widget").exists()


def test_documents_over_the_size_limit_are_refused_before_any_work(base, tmp_path):
    cfg = AdaptiveMoEConfig().replace(workspace=str(tmp_path / "ws"), **{"creation.max_document_chars": 1000})
    big = tmp_path / "big.md"
    big.write_text("The Widget W-3 weighs 340 g. " * 100)
    with AdaptiveMoE(cfg, base=base) as moe:
        with pytest.raises(ValueError, match=r"2,900 characters, more than creation.max_document_chars=1,000"):
            moe.create_expert("big", documents=[str(big)], progress=False)
        assert "big" not in moe.experts and not (tmp_path / "ws" / "creating" / "big").exists()


def test_a_base_too_short_to_read_passages_gets_a_clear_error(base, tmp_path):
    long = [("Passages:\n[1] " + "Ada was born in Oslo. " * 200 + "\n\nQuestion: Where was Ada born?", "Oslo")]
    with pytest.raises(ValueError, match=r"no reading example fits .*use creation\.method: rules"):
        reader_module.train_reader(base, tmp_path / "r", long, steps=1, progress=False)
    assert not (tmp_path / "r").exists()


def test_training_the_reader_unloads_the_pools_experts_first(base, tmp_path, short_examples):
    from adaptive_moe.testing import make_random_adapter

    cfg = AdaptiveMoEConfig().replace(
        workspace=str(tmp_path / "ws"),
        **{"generation.max_new_tokens": 3, "router.embedder": "base", "integrator.expert_confidence_floor": 0.0,
           "creation.reader_steps": 2, "creation.forced_general_questions": 2, "creation.domain_margin": 0.0,
           "creation.general_tolerance": 1.0},
    )  # fmt: skip
    general = [("What is the capital of France?", ["Paris"])] * 2
    with AdaptiveMoE(cfg, base=base) as moe:
        moe.add_expert(make_random_adapter(base.model, tmp_path / "old", seed=1), "old", questions=["Who?"])
        moe.generate("Who?", experts=["old"])
        assert "old" in moe.pool.resident
        result = moe.create_expert("widget", documents=[SPEC], progress=False, general=general)
        assert result.admitted and (tmp_path / "ws" / "readers").is_dir()
        assert moe.generate("Who?", experts=["old"]).route == "expert"  # back on demand
