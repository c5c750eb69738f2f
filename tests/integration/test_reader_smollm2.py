"""Retrieval experts on the embedded SmolLM2 with the shipped reader: creation trains nothing, answers
come from the document's passages and cite them."""

from __future__ import annotations

import pytest

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig
from adaptive_moe.creation.reader import EMBEDDED_READER_DIR, reader_for
from adaptive_moe.evaluation.scoring import get_scorer

pytestmark = pytest.mark.integration

# written for this test: not a corpus document, and not seen by the reader's fit
LIGHTHOUSE = """# Morrow Point lighthouse

The Morrow Point lighthouse stands on a granite spur north of the fishing town of Keswold.
It was designed by the engineer Ansel Crane and first lit in 1871.

## The light

| Item | Value |
|---|---|
| Tower height | 31 m |
| Range | 19 nautical miles |
| Character | two white flashes every 15 seconds |

The keepers left in 1989, when the light was automated. The old keepers' cottage is now a small museum
of shipwrecks, open from April to October.
"""
QUESTIONS = [
    ("Who designed the Morrow Point lighthouse?", ["Ansel Crane", "Crane"]),
    ("How tall is the Morrow Point lighthouse tower?", ["31 m", "31"]),
    ("In what year was the Morrow Point light automated?", ["1989"]),
    ("What does the old keepers' cottage at Morrow Point hold now?", ["museum"]),
]


def test_the_shipped_reader_is_the_embedded_models(smollm2, tmp_path):
    assert reader_for(smollm2, tmp_path, progress=False) == EMBEDDED_READER_DIR
    assert not (tmp_path / "readers").exists()  # nothing trained


def test_a_retrieval_expert_reads_and_cites_its_document(smollm2, tmp_path):
    doc = tmp_path / "lighthouse.md"
    doc.write_text(LIGHTHOUSE)
    changes = {"creation.method": "retrieval", "creation.reader": "shared", "creation.check_questions": 6,
               "creation.forced_general_questions": 4, "generation.max_new_tokens": 24}  # fmt: skip
    cfg = AdaptiveMoEConfig().replace(workspace=str(tmp_path / "ws"), **changes)
    judge = get_scorer("contains")
    with AdaptiveMoE(cfg, base=smollm2) as moe:
        result = moe.create_expert("lighthouse", documents=[str(doc)], progress=False)
        assert result.admitted, result.reasons
        assert result.data["check_questions"] >= 3  # the table's rows check it too
        outs = moe.generate([q for q, _ in QUESTIONS], experts=["lighthouse"])
        right = [judge.score(o.text, golds) for o, (_, golds) in zip(outs, QUESTIONS, strict=True)]
        assert sum(right) >= 3, [o.text for o in outs]
        for out in outs:
            assert out.route == "expert" and out.attribution.citations
            assert all(c["source"].endswith("lighthouse.md") for c in out.attribution.citations)
        height = outs[1].attribution.citations
        assert any("31 m" in c["text"] and c["lines"][0] == c["lines"][1] for c in height)
