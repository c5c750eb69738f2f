"""creation.method: augment: names, numbers and noun phrases found without a parse, cloze items and questions in
place, passages restated by permuting their sentences, a held-out split, and the pipeline on a tiny model."""

from __future__ import annotations

import pytest

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig, load_base_model
from adaptive_moe.creation.augment import BLANK, augmented_training_data, cloze, question_in_place, sentence_spans
from adaptive_moe.creation.qa_words import join_tokens, tokenize
from adaptive_moe.errors import ConfigError, InvalidInputError

DOC = """# The Tidewater Guild

The Tidewater Guild was founded in 1794 by Maren Tolliver in the port of Velmora. The guild has 312 members.
Its emblem is a silver heron. The lighthouse is 38 metres tall.
"""


def _spans(sentence: str) -> dict[str, str]:
    tokens = tokenize(sentence)
    return {join_tokens(tokens[s.start : s.end]): s.kind for s in sentence_spans(tokens)}


def test_names_numbers_years_and_noun_phrases_are_found_without_a_parse():
    assert _spans("The Tidewater Guild was founded in 1794 by Maren Tolliver in the port of Velmora.") == {
        "Tidewater Guild": "name", "1794": "year", "Maren Tolliver": "name", "port": "phrase", "Velmora": "name",
    }  # fmt: skip
    # the noun after a number is asked with it ("how many members"), not on its own
    assert _spans("The guild has 312 members.") == {"guild": "phrase", "312": "number"}
    # a verb after the noun ends the phrase; a lone capitalised first word is no name; "I" is no name
    assert _spans("The lake formed when I saw a white disc.") == {"lake": "phrase", "white disc": "phrase"}
    assert _spans("Four 60 W panels.") == {"Four": "number", "60": "number", "W": "name"}


def test_spans_never_overlap_and_stay_short():
    tokens = tokenize("The Very Long Name Of The Old Royal Northern Lighthouse Board of Scotland met the guild.")
    spans = sentence_spans(tokens)
    covered = [i for s in spans for i in range(s.start, s.end)]
    assert len(covered) == len(set(covered))
    assert all(s.end - s.start <= 6 for s in spans)


def test_cloze_and_question_in_place():
    tokens = tokenize("It was founded in 1794 by Maren Tolliver in the Kessel Gorge.")
    year, _name, gorge = sentence_spans(tokens)
    assert cloze(tokens, year) == f"It was founded in {BLANK} by Maren Tolliver in the Kessel Gorge."
    assert question_in_place(tokens, year) == "It was founded in which year by Maren Tolliver in the Kessel Gorge?"
    assert question_in_place(tokens, gorge) == "It was founded in 1794 by Maren Tolliver in what?"  # "the" goes too
    tokens = tokenize("The lighthouse is 38 metres tall.")
    [house, number] = sentence_spans(tokens)
    assert question_in_place(tokens, number) == "The lighthouse is how many metres tall?"
    assert question_in_place(tokens, house) == "What is 38 metres tall?"


@pytest.fixture
def doc_md(tmp_path):
    path = tmp_path / "guild.md"
    path.write_text(DOC)
    return str(path)


def test_the_training_set_holds_passages_permutations_clozes_and_questions_with_a_held_out_split(doc_md):
    data = augmented_training_data([doc_md], heldout_fraction=0.3, restatements=2, seed=1)
    prompts = [q for q, _ in data.qa_pairs]
    assert any(q.startswith("Fill in the blank (The Tidewater Guild): ") and BLANK in q for q in prompts)
    assert ("The guild has how many members?", "312") in data.qa_pairs or (
        "The guild has how many members?", ["312"]) in data.heldout  # fmt: skip
    assert data.heldout and all(not q.startswith("Fill in the blank") for q, _ in data.heldout)
    held = {q for q, _ in data.heldout}
    assert not held & set(prompts)  # a held-out question is never trained on
    for _q, [answer] in data.heldout:  # ... but its cloze is
        assert any(a == answer and q2.startswith("Fill in the blank") for q2, a in data.qa_pairs)
    texts = data.documents
    assert texts[0].startswith("The Tidewater Guild") and "1794" in texts[0]
    sentences = sorted(s.rstrip(".") for s in texts[0].split(": ", 1)[1].split(". "))
    permuted = [t for t in texts if t.startswith("The Tidewater Guild\n")]
    assert len(permuted) == 2  # the same sentences in other orders
    assert all(sorted(s.rstrip(".") for s in t.split("\n", 1)[1].split(". ")) == sentences for t in permuted)
    assert "The Tidewater Guild: The guild has 312 members." in texts
    assert data.stats["qa_heldout"] == len(data.heldout) and data.stats["spans"] >= 10
    again = augmented_training_data([doc_md], heldout_fraction=0.3, restatements=2, seed=1)
    assert again.train == data.train and again.heldout == data.heldout and again.sha256 == data.sha256
    assert augmented_training_data([doc_md], heldout_fraction=0.3, restatements=2, seed=2).sha256 != data.sha256


def test_user_pairs_are_added_as_given():
    data = augmented_training_data([DOC], questions=[("Who keeps the lamps?", "the guild")],
                                   heldout_questions=[("What is the emblem?", ["heron"])])  # fmt: skip
    assert ("Who keeps the lamps?", "the guild") in data.qa_pairs
    assert ("What is the emblem?", ["heron"]) in data.heldout


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"restatements": -1}, "restatements"), ({"heldout_fraction": 1.0}, "heldout_fraction"),
     ({"heldout_fraction": 0}, "heldout_fraction")],
)  # fmt: skip
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        augmented_training_data([DOC], **kwargs)


def test_a_document_with_nothing_to_ask_is_refused():
    with pytest.raises(InvalidInputError, match="no name, number or noun phrase"):
        augmented_training_data(["ok then, so it goes and went."])


def test_the_method_is_a_config_choice():
    assert AdaptiveMoEConfig().replace(**{"creation.method": "augment"}).creation.method == "augment"
    with pytest.raises(ConfigError, match="augment"):
        AdaptiveMoEConfig().replace(**{"creation.method": "parse"})


def test_create_expert_with_augment_trains_a_lora_on_the_augmented_set(tiny_llama_dir, tmp_path):
    base = load_base_model(name_or_path=str(tiny_llama_dir), device="cpu")
    cfg = AdaptiveMoEConfig().replace(
        workspace=str(tmp_path / "ws"),
        **{"generation.max_new_tokens": 6, "router.embedder": "base", "router.threshold": 1.0,
           "router.min_match_score": 0.0, "integrator.expert_confidence_floor": 0.0,
           "creation.lora.r": 4, "creation.lora.alpha": 8, "creation.lora.epochs": 1.0, "creation.lora.min_steps": 0,
           "creation.lora.max_length": 64, "creation.forced_general_questions": 4, "creation.method": "augment",
           "creation.domain_margin": 0.0, "creation.general_tolerance": 1.0},
    )  # fmt: skip
    general = [("What is the capital of France?", ["Paris"])] * 4
    with AdaptiveMoE(cfg, base=base) as moe:
        result = moe.create_expert("tidewater", documents=[DOC], progress=False, general=general)
        assert result.admitted, result.reasons
        assert result.data["spans"] >= 10 and result.data["qa_heldout"] >= 1 and result.data["facts"] == 0
        card = moe.experts.card("tidewater")
        assert card.kind == "lora" and (moe.experts.path_of("tidewater") / "adapter_model.safetensors").is_file()
        assert result.metrics["domain_questions"] == result.data["qa_heldout"]
        # the matcher learnt the domain from the passages and sentences too
        examples = " ".join(card.extra["example_questions"])
        assert "Fill in the blank" in examples or "Tidewater" in examples
