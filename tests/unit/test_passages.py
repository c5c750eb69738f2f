"""Documents cut into passages: paragraphs, list items, table rows, headings as context, line spans."""

from __future__ import annotations

import pytest

from adaptive_moe.documents import Passage, document_passages, load_passages
from adaptive_moe.errors import InvalidInputError

DOC = """# Widget W-3 manual

Thank you for choosing the Widget W-3. It is made by Acme Ltd.

## Specifications

| Item | Value |
|---|---|
| Weight | 340 g |
| Colour | *green* |

| Part | Size | Price |
|---|---|---|
| Filter | 3 cm | £4 |

**Cleaning**

1. Rinse the filter
   in warm water.
2. Let it dry.
"""


def test_markdown_structure_becomes_passages_with_context_and_lines():
    ps = document_passages(DOC, "manual.md")
    bodies = [p.body for p in ps]
    assert bodies[0] == "Thank you for choosing the Widget W-3. It is made by Acme Ltd."
    assert "Weight: 340 g." in bodies and "Colour: green." in bodies  # a two-column row: first cell: the other
    assert "Filter: Size: 3 cm; Price: £4." in bodies  # more columns: the column names come along
    assert "Rinse the filter in warm water." in bodies and "Let it dry." in bodies  # a continued list item
    weight = ps[bodies.index("Weight: 340 g.")]
    assert weight.context == "Widget W-3 manual — Specifications"
    assert weight.text == "Widget W-3 manual — Specifications: Weight: 340 g."
    assert weight.lines == (9, 9) and weight.cite() == "manual.md:9"
    rinse = ps[bodies.index("Rinse the filter in warm water.")]
    assert rinse.context == "Widget W-3 manual — Cleaning" and rinse.lines == (18, 19)  # a bold line heads a section
    assert ps[0].context == "Widget W-3 manual" and ps[0].lines == (3, 3)
    assert not any(b in ("Item: Value.", "Cleaning") for b in bodies)


def test_long_paragraphs_are_cut_into_windows_of_whole_sentences():
    sentence = "The lake is deep and cold in every season of the year. "
    ps = document_passages("# Lake\n\n" + sentence * 12, "lake.md", max_words=30)
    assert len(ps) == 6 and all(len(p.body.split()) <= 30 for p in ps)
    assert all(p.body.endswith(".") for p in ps)


def test_plain_text_takes_a_short_first_line_as_title():
    ps = document_passages(
        "Fenwick Farm\n\nWe keep eleven ewes.\nThe dog is called Brisk.\n", "farm.txt", markdown=False
    )
    assert [p.text for p in ps] == ["Fenwick Farm: We keep eleven ewes. The dog is called Brisk."]
    assert ps[0].lines == (3, 4)


def test_a_document_without_a_title_is_titled_by_its_file_name(tmp_path):
    letter = "Dear Tomas,\n\nThe barn roof leaks at the north end.\n\n## Kitchen\n\nThe range is green.\n"
    ps = document_passages(letter, "notes/letter_from_fenwick-farm.md")
    assert [p.context for p in ps] == ["Letter from fenwick farm"] * 2 + ["Letter from fenwick farm — Kitchen"]
    assert ps[1].text == "Letter from fenwick farm: The barn roof leaks at the north end."
    # a title of its own wins; texts and dataset rows have no file name; "" turns the fallback off
    assert document_passages("# Fenwick\n\nThe range is green.\n", "a_b.md")[0].context == "Fenwick"
    assert [p.context for p in document_passages(letter, "text[0]")][:2] == ["", ""]
    assert document_passages(letter, "farm.md", default_title="")[0].text == "Dear Tomas,"
    (tmp_path / "skerrow_diary.txt").write_text("3rd March. Wind from the north-east.\n")
    assert (
        load_passages([str(tmp_path / "skerrow_diary.txt")])[0].text
        == "Skerrow diary: 3rd March. Wind from the north-east."
    )


def test_round_trip_and_loading(tmp_path):
    p = document_passages(DOC, "m.md")[1]
    assert Passage.from_dict(p.to_dict()) == p
    (tmp_path / "a.md").write_text(DOC)
    assert [x.body for x in load_passages([str(tmp_path / "a.md")])] == [x.body for x in document_passages(DOC, "x")]
    with pytest.raises(InvalidInputError, match="no passage"):
        load_passages(["# Only a title\n\n---\n"])
