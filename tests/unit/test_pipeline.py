"""Gap analysis through the facade and the expert-creation pipeline on a tiny model: admission gate,
registration, matcher update, resolved gaps, resume after a crash, and bad input."""

from __future__ import annotations

import pytest

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig, load_base_model
from adaptive_moe.errors import InvalidInputError, ModelNotFoundError, OutputExistsError

DOC = (
    "The Tidewater Guild was founded in 1794 by Maren Tolliver in the port of Velmora. "
    "The guild has 312 members. Its emblem is a silver heron. "
    "Maren Tolliver designed the first storm lantern."
)
GENERAL = [("What is the capital of France?", ["Paris"]), ("What is 2 + 2?", ["4", "four"])] * 4


@pytest.fixture(scope="module")
def base(tiny_llama_dir):
    return load_base_model(name_or_path=str(tiny_llama_dir), device="cpu")


def _moe(base, tmp_path, **changes):
    cfg = AdaptiveMoEConfig().replace(
        workspace=str(tmp_path / "ws"),
        **{"generation.max_new_tokens": 6, "router.embedder": "base", "router.threshold": 1.0,
           "router.min_match_score": 0.0, "integrator.expert_confidence_floor": 0.0,
           "creation.lora.r": 4, "creation.lora.alpha": 8, "creation.lora.epochs": 1.0, "creation.lora.min_steps": 0,
           "creation.lora.batch_size": 8, "creation.lora.max_length": 64, "creation.forced_general_questions": 4,
           "creation.method": "rules", **changes},
    )  # fmt: skip
    return AdaptiveMoE(cfg, base=base)


def test_rejected_candidate_registers_nothing_and_resumes(base, tmp_path):
    moe = _moe(base, tmp_path, **{"creation.domain_margin": 1.0})  # a random model cannot gain 100 points
    result = moe.create_expert("tidewater", documents=[DOC], progress=False, general=GENERAL)
    assert not result.admitted and result.card is None and "domain gain" in result.reasons[0]
    assert moe.experts.names() == [] and moe.router.experts == [] and moe.pool.extra_names == []
    assert {"data", "train", "evaluate", "register", "total"} <= set(result.timings)
    assert result.data["facts"] >= 4 and result.metrics["domain_questions"] >= 1
    again = moe.create_expert("tidewater", documents=[DOC], progress=False, general=GENERAL)
    assert again.resumed == ["train"] and again.metrics == result.metrics  # the same adapter, not retrained


def test_admitted_expert_is_registered_matched_and_resolves_gaps(base, tmp_path):
    tracked = bool(__import__("importlib").util.find_spec("tensorboard"))
    moe = _moe(base, tmp_path, **{"creation.domain_margin": 0.0, "creation.general_tolerance": 1.0,
                                  "router.min_match_score": 0.5,
                                  "creation.report_to": "tensorboard" if tracked else "none"})  # fmt: skip
    gap_q = "When was the Tidewater Guild founded?"
    assert moe.generate(gap_q).route == "gap"  # no expert yet
    assert len(moe.gaps) == 1
    result = moe.create_expert("tidewater", documents=[DOC], progress=False, general=GENERAL)
    assert result.admitted, result.reasons
    assert moe.experts.names() == ["tidewater"] and "tidewater" in moe.router.experts
    card = moe.experts.card("tidewater")
    assert card.metrics["domain_accuracy"] == result.metrics["domain_accuracy"]
    assert card.extra["example_questions"] and "Tidewater Guild" in card.domain
    assert card.extra["training_memory"]["peak_rss_mib"] > 50  # the training's peak memory, in the card
    assert result.resolved_gaps == [1] and len(moe.gaps) == 0
    assert not (tmp_path / "ws" / "creating" / "tidewater").exists()
    if tracked:  # the run's loss curve and admission metrics, offline under <workspace>/runs/
        [run] = (tmp_path / "ws" / "runs").glob("tidewater-*")
        assert len(list(run.glob("events.out.tfevents.*"))) >= 2
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(run))
        events.Reload()
        assert {"card/text_summary", "config/text_summary", "evaluation/text_summary"} <= set(events.Tags()["tensors"])
        assert events.Scalars("admission/admitted")[-1].value == 1.0
    with pytest.raises(OutputExistsError, match="exists; pass new_version=True"):
        moe.create_expert("tidewater", documents=[DOC], progress=False)
    v2 = moe.create_expert("tidewater", documents=[DOC], new_version=True, progress=False, general=GENERAL)
    assert v2.admitted and v2.card.version == 2


def test_crash_in_training_registers_nothing(base, tmp_path, monkeypatch):
    import adaptive_moe.creation.training as training

    moe = _moe(base, tmp_path, **{"creation.domain_margin": 0.0, "creation.general_tolerance": 1.0})

    def crash(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr(training, "train_lora", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        moe.create_expert("tidewater", documents=[DOC], progress=False, general=GENERAL)
    assert moe.experts.names() == []
    monkeypatch.undo()
    assert moe.create_expert("tidewater", documents=[DOC], progress=False, general=GENERAL).admitted


def test_questions_only_need_heldout_questions(base, tmp_path):
    moe = _moe(base, tmp_path, **{"creation.domain_margin": 0.0, "creation.general_tolerance": 1.0})
    qa = [("Who founded the guild?", "Maren Tolliver"), ("When was the guild founded?", "1794")]
    with pytest.raises(InvalidInputError, match="pass heldout_questions="):
        moe.create_expert("guild", questions=qa, progress=False)
    result = moe.create_expert("guild", questions=qa, heldout_questions=[("Who started the guild?", ["Maren"])],
                               progress=False, general=GENERAL)  # fmt: skip
    assert result.data["qa_train"] == 2 and result.metrics["domain_questions"] == 1


@pytest.mark.parametrize(
    ("documents", "error", "match"),
    [
        ([""], InvalidInputError, "empty"),
        (["Hello."], InvalidInputError, "too short"),
        (None, InvalidInputError, "needs documents or question-answer pairs"),
    ],
)
def test_bad_documents(base, tmp_path, documents, error, match):
    moe = _moe(base, tmp_path)
    with pytest.raises(error, match=match):
        moe.create_expert("tidewater", documents=documents, progress=False)
    assert moe.experts.names() == []


def test_binary_and_missing_files(base, tmp_path):
    moe = _moe(base, tmp_path)
    blob = tmp_path / "blob.txt"
    blob.write_bytes(b"\x00\x01\x02binary")
    with pytest.raises(InvalidInputError, match="binary"):
        moe.create_expert("tidewater", documents=[blob], progress=False)
    with pytest.raises(ModelNotFoundError):
        moe.create_expert("tidewater", documents=[tmp_path / "missing.md"], progress=False)
    with pytest.raises(InvalidInputError, match="expert name"):
        moe.create_expert("../escape", documents=[DOC], progress=False)


def test_analyze_gaps_clusters_the_ledger(base, tmp_path):
    moe = _moe(base, tmp_path)
    queries = [f"Who founded the Tidewater Guild in year {i}?" for i in range(4)]
    queries += [f"What does the river Quell carry past mill {i}?" for i in range(4)]
    assert [o.route for o in moe.generate(queries)] == ["gap"] * 8
    report = moe.analyze_gaps(min_cluster_size=2)
    assert report.n_gaps == 8 and sum(c.size for c in report.clusters) + len(report.unclustered) == 8
    assert all(c.suggested_name for c in report.clusters)
    assert "gaps" in str(report).lower() or report.clusters
