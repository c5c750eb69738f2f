"""build_training_data: documents -> facts -> many short question wordings, restatements, a held-out split by
wording. The rules run without any model; the model-question path is tested with a stub."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from adaptive_moe.creation.data import Fact, TrainingData, build_training_data
from adaptive_moe.creation.qa_rules import MAX_ANSWER_WORDS, extract_facts, tokenize
from adaptive_moe.creation.training import as_examples
from adaptive_moe.documents import markdown_to_text, split_passages, split_sentences
from adaptive_moe.errors import AdaptiveMoEError, InvalidInputError, ModelNotFoundError
from adaptive_moe.evaluation.scoring import normalize_answer

# An invented guild and town: one page of ordinary prose, with headings, pronouns, appositions, short
# references ("the guild", "the town") and sentences no rule matches.
TIDEWATER = """\
# The Tidewater Guild

The Tidewater Guild is a society of lamp-makers and sailors in the port town of Velmora. It was founded in
1794 by Maren Tolliver in the port of Velmora. Tolliver was a shipwright from the island of Skarra. She
designed the first storm lantern, a brass lamp that stays lit in a gale.

The guild's emblem is a silver heron. Its motto is "Light against the dark". The first master of the guild
was Maren Tolliver, who led it until 1820. In 1802, the guild built a lighthouse on Gull Rock. The
lighthouse is 38 metres tall. It was designed by Ilsa Brandt, an engineer from Corrin.

## Members and ships

The guild has 312 members. Its flagship is called the Brightwater. The Brightwater was launched on
3 March 1801. Captain Oskar Venn commanded the ship for twelve years. The guild also owns three warehouses
on Harbour Street. Storms are common on that coast, and the light has saved many ships.

Velmora lies on the northern coast of Arnholt. The town has a population of 4,200. The mayor of Velmora is
Edda Marsh. The guildhall is located in Lantern Square. It was built by the stonemason Petr Halloran in 1811.

Every autumn the guild holds the Festival of Lamps. The festival was first held in 1799. Maren Tolliver died
in Velmora in 1831 at the age of 71. Her daughter, Ilse Tolliver, became the second master of the guild. Ilse
Tolliver wrote a history of the guild in 1840. The book is called *The Long Watch*.

The guild's workshop makes around 900 lanterns a year. Most lanterns are made from brass and whale bone.
Apprentices train for five years before they join the guild. Dr. Amos Pell, the guild's physician, moved to
Velmora in 1815.
"""

# (question, answer) pairs the document must yield, one or more per fact; every shape is here.
TIDEWATER_QA = [
    ("Who founded the Tidewater Guild?", "Maren Tolliver"),  # passive: agent
    ("By whom was the Tidewater Guild founded?", "Maren Tolliver"),
    ("Who was the founder of the Tidewater Guild?", "Maren Tolliver"),
    ("When was the Tidewater Guild founded?", "1794"),  # passive: date
    ("In what year was the Tidewater Guild founded?", "1794"),
    ("Where was the Tidewater Guild founded?", "Velmora"),  # passive: place, short core of "the port of Velmora"
    ("In which port was the Tidewater Guild founded?", "Velmora"),
    ("What is the Tidewater Guild?", "a society of lamp-makers and sailors"),  # copula: what is X
    ("In which town is the Tidewater Guild?", "Velmora"),
    ("Who was Maren Tolliver?", "a shipwright"),  # "Tolliver" -> "Maren Tolliver"
    ("Where was Maren Tolliver from?", "Skarra"),
    ("What did Maren Tolliver design?", "the first storm lantern"),  # active: "She" resolved
    ("Who designed the first storm lantern?", "Maren Tolliver"),
    ("What is the Tidewater Guild's emblem?", "a silver heron"),  # X's Y is Z
    ("What is the emblem of the Tidewater Guild?", "silver heron"),
    ("What is the motto of the Tidewater Guild?", "Light against the dark"),  # "Its motto"
    ("Who was the first master of the Tidewater Guild?", "Maren Tolliver"),  # the Y of X is Z
    ("Who was the Tidewater Guild's first master?", "Maren Tolliver"),
    ("Until when did Maren Tolliver lead the Tidewater Guild?", "1820"),  # relative clause, "it" resolved
    ("What did the Tidewater Guild build?", "a lighthouse"),  # fronted "In 1802,"
    ("Where did the Tidewater Guild build a lighthouse?", "Gull Rock"),
    ("In what year did the Tidewater Guild build a lighthouse?", "1802"),
    ("How tall is the lighthouse?", "38 metres"),
    ("Who designed the lighthouse?", "Ilsa Brandt"),  # "It" is the previous subject
    ("Where was Ilsa Brandt from?", "Corrin"),  # trailing apposition
    ("How many members does the Tidewater Guild have?", "312"),  # numbers
    ("What is the Tidewater Guild's flagship called?", "the Brightwater"),  # named / called
    ("What is the name of the Tidewater Guild's flagship?", "Brightwater"),
    ("When was the Brightwater launched?", "3 March 1801"),  # full date
    ("In what year was the Brightwater launched?", "1801"),
    ("How long did Captain Oskar Venn command the ship?", "twelve years"),
    ("How many warehouses does the Tidewater Guild own?", "three"),
    ("Where does Velmora lie?", "the northern coast of Arnholt"),  # location verb
    ("Where is Velmora located?", "Arnholt"),
    ("What is the population of Velmora?", "4,200"),  # "the town" -> "Velmora"
    ("How many people live in Velmora?", "4,200"),
    ("Who is the mayor of Velmora?", "Edda Marsh"),
    ("Where is the guildhall located?", "Lantern Square"),  # located in
    ("Who built the guildhall?", "Petr Halloran"),  # "the stonemason Petr Halloran"
    ("When was the guildhall built?", "1811"),
    ("What does the Tidewater Guild hold?", "the Festival of Lamps"),
    ("How often does the Tidewater Guild hold the Festival of Lamps?", "every autumn"),
    ("When was the Festival of Lamps first held?", "1799"),  # "the festival" -> "the Festival of Lamps"
    ("Where did Maren Tolliver die?", "Velmora"),
    ("In what year did Maren Tolliver die?", "1831"),
    ("At what age did Maren Tolliver die?", "71"),
    ("Who was Maren Tolliver's daughter?", "Ilse Tolliver"),  # "Her daughter, Ilse Tolliver,"
    ("Who became the second master of the Tidewater Guild?", "Ilse Tolliver"),
    ("What did Ilse Tolliver write?", "a history of the Tidewater Guild"),
    ("Who wrote a history of the Tidewater Guild?", "Ilse Tolliver"),  # irregular: wrote / written
    ("By whom was a history of the Tidewater Guild written?", "Ilse Tolliver"),
    ("How many lanterns a year does the Tidewater Guild's workshop make?", "900"),
    ("What are most lanterns made from?", "brass and whale bone"),
    ("Where did Dr. Amos Pell move?", "Velmora"),
    ("Who was the Tidewater Guild's physician?", "Dr. Amos Pell"),
]


def _questions(data: TrainingData) -> dict[str, list[str]]:
    """Every question wording of every fact (trained or held out) -> its gold answers."""
    return {q: f.answers for f in data.facts for q in f.questions}


def _same(a: str, b: str) -> bool:
    return normalize_answer(a) == normalize_answer(b)


def _asks(data: TrainingData, question: str, answer: str) -> None:
    questions = _questions(data)
    assert question in questions, f"missing {question!r}; have:\n" + "\n".join(sorted(questions))
    assert any(_same(answer, gold) for gold in questions[question]), (question, questions[question])


def _facts(text: str) -> TrainingData:
    return build_training_data(text, heldout_fraction=0)


@pytest.fixture(scope="module")
def tidewater() -> TrainingData:
    return build_training_data(TIDEWATER, seed=0)


# -- the test document ----------------------------------------------------------------------------
def test_document_yields_many_correct_facts(tidewater):
    for question, answer in TIDEWATER_QA:
        _asks(tidewater, question, answer)
    matched = {id(f) for f in tidewater.facts for q, a in TIDEWATER_QA if q in f.questions}
    assert len(matched) >= 40
    assert tidewater.stats["facts"] == len(tidewater.facts) >= 50
    # every fact's answer is stated by the document (as written or with its references resolved)
    text = normalize_answer(TIDEWATER + " " + " ".join(tidewater.documents))
    for fact in tidewater.facts:
        assert any(f" {normalize_answer(a)} " in f" {text} " for a in fact.answers), fact


def test_questions_are_well_formed(tidewater):
    pronouns = {"it", "its", "he", "she", "his", "her", "him", "they", "their", "them", "this", "these"}
    for fact in tidewater.facts:
        assert len(fact.answer.split()) <= MAX_ANSWER_WORDS
        assert len(fact.questions) == len({normalize_answer(q) for q in fact.questions})
        for q in fact.questions:
            assert q.endswith("?") and q[0].isupper() and "  " not in q, q
            assert not set(normalize_answer(q).split()) & pronouns, q  # self-contained
            assert f" {normalize_answer(fact.answer)} " not in f" {normalize_answer(q)} ", q  # no give-away
    # each question once over the whole set, trained or held out
    everything = [q for q, _ in tidewater.qa_pairs] + [q for q, _ in tidewater.heldout]
    assert len(everything) == len({normalize_answer(q) for q in everything})


def test_mostly_several_wordings_per_fact(tidewater):
    wordings = [len(f.questions) for f in tidewater.facts]
    assert sum(w >= 2 for w in wordings) / len(wordings) >= 0.75
    assert sum(wordings) / len(wordings) >= 2.3


def test_answers_have_short_cores_and_aliases(tidewater):
    facts = {q: f for f in tidewater.facts for q in f.questions}
    founded = facts["Where was the Tidewater Guild founded?"]
    assert founded.answer == "Velmora" and "the port of Velmora" in founded.aliases
    assert facts["What is the Tidewater Guild's emblem?"].aliases == ("silver heron",)
    assert facts["Who built the guildhall?"].answer == "Petr Halloran"
    assert "the stonemason Petr Halloran" in facts["Who built the guildhall?"].aliases
    captain = facts["Who commanded the ship?"]
    assert captain.answer == "Captain Oskar Venn" and {"Oskar Venn", "Venn"} <= set(captain.aliases)
    # two Tollivers in the document: the surname alone is no alias of either
    assert "Tolliver" not in facts["Who founded the Tidewater Guild?"].aliases
    assert facts["How many lanterns a year does the Tidewater Guild's workshop make?"].aliases == ("around 900",)


def test_facts_record_subject_relation_sentence_and_source(tidewater):
    fact = next(f for f in tidewater.facts if "Who founded the Tidewater Guild?" in f.questions)
    assert fact.subject == "the Tidewater Guild" and fact.relation == "founded by"
    assert fact.sentence.startswith("It was founded in 1794") and fact.source == "text[0]"
    assert "Maren Tolliver founded the Tidewater Guild." in fact.statements
    assert "The founder of the Tidewater Guild was Maren Tolliver." in fact.statements


def test_restatements_and_sentences_become_documents(tidewater):
    docs = tidewater.documents
    assert "The Tidewater Guild was founded by Maren Tolliver." in docs  # a restatement
    assert "Maren Tolliver founded the Tidewater Guild." in docs
    # every sentence once, with its references resolved, including those no rule matched
    assert "The Tidewater Guild was founded in 1794 by Maren Tolliver in the port of Velmora." in docs
    assert "Storms are common on that coast, and the light has saved many ships." in docs
    assert "The Tidewater Guild's flagship is called the Brightwater." in docs  # "Its flagship ..."
    assert tidewater.stats["sentences_without_facts"] >= 2
    # a sentence that equals a restatement is there once
    assert 0 < tidewater.stats["sentence_documents"] <= tidewater.stats["sentences"]
    assert len(docs) == len(set(docs))
    assert all(len(d.split()) <= 40 for d in docs)  # short documents only, no long profiles
    # training is mostly question-answer pairs
    assert len(tidewater.qa_pairs) > len(docs) / 2


@pytest.mark.parametrize("n", [0, 1, 3])
def test_restatements_per_fact(n):
    data = build_training_data(TIDEWATER, restatements=n)
    assert data.stats["restatements"] <= n * len(data.facts)
    assert (data.stats["restatements"] == 0) == (n == 0)
    assert len(data.documents) == data.stats["restatements"] + data.stats["sentence_documents"]


def test_train_items_are_what_train_lora_takes(tidewater):
    examples = as_examples(tidewater.train)
    assert len(examples) == len(tidewater.train)
    qa = [e for e in examples if e.is_qa]
    assert len(qa) == tidewater.stats["qa_train"]
    assert all(len(e.text.split()) <= MAX_ANSWER_WORDS for e in qa)  # loss on a short answer


# -- the shapes, one realistic sentence or two at a time -------------------------------------------
SHAPES = [
    # passive with an agent, a date, a place
    ("The Amberline Company was established in 1822 by the brothers Tomas and Piet Varga.",
     "Who established the Amberline Company?", "the brothers Tomas and Piet Varga"),
    ("The Amberline Company was established in 1822 by the brothers Tomas and Piet Varga.",
     "Who was the founder of the Amberline Company?", "the brothers Tomas and Piet Varga"),
    ("The treaty was signed on 14 June 1703 in Ostrava.", "On what date was the treaty signed?", "14 June 1703"),
    ("The treaty was signed on 14 June 1703 in Ostrava.", "Where was the treaty signed?", "Ostrava"),
    ("The bridge was completed in May 1867.", "In which month was the bridge completed?", "May 1867"),
    ("The bridge was completed in May 1867.", "In what year was the bridge completed?", "1867"),
    ("The cathedral was rebuilt in the 1790s after a fire.", "In which decade was the cathedral rebuilt after a fire?",
     "1790s"),  # a phrase no rule asks about stays in the question
    ("The cathedral was rebuilt in the 1790s after a fire.", "What was the cathedral rebuilt after?", "a fire"),
    ("Brann Castle was built by the Duke of Orlen in the 14th century.", "Who built Brann Castle?",
     "the Duke of Orlen"),
    ("Brann Castle was built by the Duke of Orlen in the 14th century.", "In which century was Brann Castle built?",
     "the 14th century"),
    ("The poem was written by Sella Quist.", "Who wrote the poem?", "Sella Quist"),  # irregular participle
    ("The poem was written by Sella Quist.", "Who was the author of the poem?", "Sella Quist"),
    ("The company is owned by the Harrow family.", "Who owns the company?", "the Harrow family"),  # present
    ("The festival is held in Dunmere every August.", "Where is the festival held?", "Dunmere"),
    ("The festival is held in Dunmere every August.", "How often is the festival held?", "every August"),
    ("Corvin Abbey was founded by monks from Lisca in 1120.", "When was Corvin Abbey founded?", "1120"),
    ("Corvin Abbey was founded by monks from Lisca in 1120.", "Who founded Corvin Abbey?", "monks from Lisca"),
    ("Jonas Keel was born in Halvik on 3 May 1610.", "Where was Jonas Keel born?", "Halvik"),
    ("Jonas Keel was born in Halvik on 3 May 1610.", "When was Jonas Keel born?", "3 May 1610"),
    ("The Weigh House's roof is made of copper.", "What is the Weigh House's roof made of?", "copper"),
    # copula, both directions, "the Y of Z" <-> "Z's Y"
    ("Halvik is the capital of the Morrow Isles.", "What is the capital of the Morrow Isles?", "Halvik"),
    ("Halvik is the capital of the Morrow Isles.", "What is the Morrow Isles' capital?", "Halvik"),
    ("Halvik is the capital of the Morrow Isles.", "What is Halvik?", "the capital of the Morrow Isles"),
    ("The capital of the Morrow Isles is Halvik.", "What is the name of the capital of the Morrow Isles?", "Halvik"),
    ("Ostrava's oldest building is the Weigh House.", "What is the oldest building of Ostrava?", "the Weigh House"),
    ("The currency of Morvane is the silver mark.", "What is Morvane's currency?", "the silver mark"),
    ("The Weigh House is the oldest building in Ostrava.", "What is the oldest building in Ostrava?",
     "the Weigh House"),
    ("Jonas Keel was a printer. Keel's wife was Anna Brisk.", "Who was Jonas Keel's wife?", "Anna Brisk"),
    ("Jonas Keel was a printer. Keel's wife was Anna Brisk.", "Who was the wife of Jonas Keel?", "Anna Brisk"),
    ("Jonas Keel was a printer.", "Who was Jonas Keel?", "a printer"),
    ("The river Dun is 140 kilometres long.", "How long is the river Dun?", "140 kilometres"),
    ("The tower is 52 metres high.", "What is the height of the tower?", "52 metres"),
    # active verbs: regular and irregular past, present, phrasal, with dates and places
    ("Jonas Keel printed the first map of the islands in 1645.", "What did Jonas Keel print?",
     "the first map of the islands"),
    ("Jonas Keel printed the first map of the islands in 1645.", "Who printed the first map of the islands?",
     "Jonas Keel"),
    ("Jonas Keel printed the first map of the islands in 1645.",
     "When did Jonas Keel print the first map of the islands?", "1645"),
    ("Anna Brisk led the strike of 1872.", "Who was the leader of the strike of 1872?", "Anna Brisk"),
    ("Anna Brisk led the strike of 1872.", "By whom was the strike of 1872 led?", "Anna Brisk"),
    ("The mill produces flour and linseed oil.", "What does the mill produce?", "flour and linseed oil"),
    ("Piet Varga married the painter Lotte Aro in 1850.", "Who did Piet Varga marry?", "Lotte Aro"),
    ("The guild sold the hall to the town council in 1901.", "To whom did the guild sell the hall?",
     "the town council"),
    ("Maren Tolliver set up a workshop in Velmora.", "What did Maren Tolliver set up?", "a workshop"),
    ("Maren Tolliver grew up in Skarra.", "Where did Maren Tolliver grow up?", "Skarra"),
    ("The bridge opened on 12 April 1888.", "When did the bridge open?", "12 April 1888"),
    ("In March 1801, the guild elected a new master.", "When did the guild elect a new master?", "March 1801"),
    ("J. R. Ostrander discovered the comet Vessa in 1871.", "Who discovered the comet Vessa?", "J. R. Ostrander"),
    ("Dr. Lina Hesk founded the Halvik School of Medicine in 1899.",
     "Who founded the Halvik School of Medicine?", "Dr. Lina Hesk"),
    ("The Varga brothers founded the company and ran it until 1860.",
     "Until what year did the Varga brothers run the company?", "1860"),
    # numbers and quantities
    ("Sella Quist wrote three novels.", "How many novels did Sella Quist write?", "three"),
    ("The island has about 9,000 inhabitants.", "How many inhabitants does the island have?", "9,000"),
    ("The library holds 12,000 books.", "How many books does the library hold?", "12,000"),
    ("The ship carried 40 passengers.", "How many passengers did the ship carry?", "40"),
    # named / called / known as
    ("The local dialect is known as Brisk.", "What is the local dialect known as?", "Brisk"),
    ("The largest bell is named Old Tom.", "What is the name of the largest bell?", "Old Tom"),
    # locations
    ("The monastery lies in the Vell valley.", "Where does the monastery lie?", "the Vell valley"),
    ("The company is based in Ostrava.", "Where is the company based?", "Ostrava"),
    ("The observatory stands on Mount Kerrow.", "Where is the observatory located?", "Mount Kerrow"),
    ("The lake, which lies east of the town, is 12 metres deep.", "Where does the lake lie?", "east of the town"),
    ("The lake, which lies east of the town, is 12 metres deep.", "How deep is the lake?", "12 metres"),
    # appositions and relative clauses
    ("J. R. Ostrander, the first director of the Halvik Observatory, discovered the comet Vessa in 1871.",
     "Who was the first director of the Halvik Observatory?", "J. R. Ostrander"),
    ("The Tidewater Guild, founded in 1794, is the oldest guild in Velmora.",
     "When was the Tidewater Guild founded?", "1794"),
    ("Ilse Tolliver, who wrote the guild's history, died in 1850.", "Who wrote the guild's history?",
     "Ilse Tolliver"),
    ("Ilse Tolliver, who wrote the guild's history, died in 1850.", "When did Ilse Tolliver die?", "1850"),
    ("The station was designed by the architect Hester Quill, who also built the town hall.",
     "Who built the town hall?", "Hester Quill"),
    ("The Great Ardmoor Telescope weighs eleven tonnes and is housed in the Sarka Dome.",
     "Where is the Great Ardmoor Telescope housed?", "the Sarka Dome"),
    ("The Great Ardmoor Telescope weighs eleven tonnes and is housed in the Sarka Dome.",
     "How much does the Great Ardmoor Telescope weigh?", "eleven tonnes"),
    ("The river Lenn rises in the Welland Hills and joins the river Ouse near Carrow.",
     "What does the river Lenn join?", "the river Ouse"),
    # two clauses with subjects of their own
    ("Emil Sarka died in 1866, and Orsolya Venn moved the workshop to the harbour district.",
     "Where did Orsolya Venn move the workshop?", "the harbour district"),
    ("Emil Sarka died in 1866, and Orsolya Venn moved the workshop to the harbour district.",
     "When did Emil Sarka die?", "1866"),
    ("The line closed in 1966 and the station is now a museum.", "In what year did the line close?", "1966"),
    # fronted phrases, with and without a comma; a life span in parentheses
    ("Born in the mountain village of Kessa, Orsolya Venn was the eldest of six children.",
     "In which village was Orsolya Venn born?", "Kessa"),
    ("At the age of fourteen Orsolya Venn was apprenticed to the lens grinder Bartholomew Crane.",
     "Who was Orsolya Venn apprenticed to?", "Bartholomew Crane"),
    ("At the age of fourteen Orsolya Venn was apprenticed to the lens grinder Bartholomew Crane.",
     "At what age was Orsolya Venn apprenticed to the lens grinder Bartholomew Crane?", "fourteen"),
    ("In 1845 Orsolya Venn opened a workshop on Fenwick Lane.", "In what year did Orsolya Venn open a workshop?",
     "1845"),
    ("During the civil war Brindlemoor was occupied by the forces of Lord Harwick.", "Who occupied Brindlemoor?",
     "the forces of Lord Harwick"),
    ("Orsolya Venn (1822–1889) was a Morvish astronomer.", "When was Orsolya Venn born?", "1822"),
    ("Orsolya Venn (1822–1889) was a Morvish astronomer.", "In what year did Orsolya Venn die?", "1889"),
    ("Orsolya Venn (1822–1889) was a Morvish astronomer.", "Who was Orsolya Venn?", "a Morvish astronomer"),
    # more ways of saying when
    ("The instrument remained in use until 1930.", "Until when did the instrument remain in use?", "1930"),
    ("The parish church of St. Ebba dates from the 13th century.",
     "From which century does the parish church of St. Ebba date?", "the 13th century"),
    ("The weekly market is held on Thursdays.", "On which day of the week is the weekly market held?", "Thursdays"),
    ("The Brindlemoor Show takes place every July.", "When does the Brindlemoor Show take place?", "every July"),
    ("The Brindlemoor Tannery was owned by the Corbet family from 1790 to 1902.",
     "Until what year was the Brindlemoor Tannery owned?", "1902"),
    ("The Brindlemoor Tannery was owned by the Corbet family from 1790 to 1902.",
     "Who was the owner of the Brindlemoor Tannery?", "the Corbet family"),
    ("The bridge was built in 1721 by the mason Tobias Wren at a cost of £900.", "At what cost was the bridge built?",
     "£900"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "question", "answer"), SHAPES)
def test_shapes(text, question, answer):
    _asks(_facts(text), question, answer)


@pytest.mark.parametrize(
    ("text", "question", "answer"),
    [
        # It / Its: the previous subject, or the passage's topic when that was only a part of it
        ("The Weigh House is in Ostrava. It was built in 1402.", "When was the Weigh House built?", "1402"),
        ("The Weigh House is in Ostrava. Its roof is made of copper.", "What is the Weigh House's roof made of?",
         "copper"),
        ("The Halvik Observatory opened in 1860. Its telescope is called the Long Eye.",
         "What is the Halvik Observatory's telescope called?", "the Long Eye"),
        # She / He: the one person the previous sentence named, as subject or not
        ("The strike was led by Anna Brisk. She was born in Dunmere.", "Where was Anna Brisk born?", "Dunmere"),
        ("Piet Varga taught mathematics. He married Lotte Aro in 1850.", "Who did Piet Varga marry?", "Lotte Aro"),
        # They / Their: a plural subject
        ("The Varga brothers were shipbuilders. They founded the Amberline Company in 1822.",
         "Who founded the Amberline Company?", "the Varga brothers"),
        # a surname or a short reference stands for the one name it can mean
        ("Jonas Keel was a printer. Keel died in 1650.", "When did Jonas Keel die?", "1650"),
        ("The Halvik Observatory opened in 1860. The observatory has 12 telescopes.",
         "How many telescopes does the Halvik Observatory have?", "12"),
        # "Its" after a subject with "of": the whole subject ("the spire of the parish church of St. Ebba")
        ("The parish church of St. Ebba dates from the 13th century. Its spire, which is 61 metres high, can be seen "
         "from the coast.", "How high is the spire of the parish church of St. Ebba?", "61 metres"),
        # an indefinite subject is definite once it is referred back to
        ("A stone bridge crosses the river at Mill Street. It was built in 1721.", "When was the stone bridge built?",
         "1721"),
        # a pronoun after a fronted phrase without a comma
        ("The Venn Company made telescopes. At its peak it employed 140 workers.",
         "How many workers did the Venn Company employ?", "140"),
    ],
)  # fmt: skip
def test_references_are_resolved(text, question, answer):
    _asks(_facts(text), question, answer)


def test_incomplete_or_indefinite_phrases_are_not_asked():
    data = _facts("Orsolya Venn was the first woman to win the medal. The Weigh House was built in 1402.")
    assert not any("first woman" in q for q in _questions(data))  # the infinitive was not parsed
    data = _facts("A crater on the Moon is named Venn. The Weigh House was built in 1402.")
    assert not any("crater" in q for q in _questions(data))  # which crater?


def test_unclear_pronouns_yield_no_questions():
    # two people in the previous sentence: "She" could be either, so the sentence asks nothing
    data = _facts("Anna Brisk met Jonas Keel in 1640. She married him in 1641.")
    assert not any("1641" in f.answers for f in data.facts)
    assert "She married him in 1641." in data.documents  # still trained on as text
    data = _facts("It was built in 1402. The Weigh House is in Ostrava.")  # nothing before "It"
    assert not any(f.answer == "1402" for f in data.facts)


@pytest.mark.parametrize(
    "text",
    [
        "Was the guild founded in 1794?",  # a question
        "The guild was not founded by Maren Tolliver.",  # negated
        "The guild will open a school in 1900.",  # modal: not a fact yet
        "Storms are common on that coast.",  # an adjective
        "Apprentices train for five years before they join the guild.",  # no verb form the rules know
    ],
)
def test_sentences_without_facts(text):
    with pytest.raises(InvalidInputError, match="too short to yield a question"):
        build_training_data(text)
    data = build_training_data([text, "The Weigh House was built in 1402."], heldout_fraction=0)
    assert all(f.sentence != text for f in data.facts)
    assert data.stats["sentences_without_facts"] == 1
    assert text in data.documents


def test_extract_facts_directly():
    found = extract_facts([["The Weigh House was built in 1402.", "It is in Ostrava."]], source="notes")
    assert [sf.resolved for sf in found] == ["The Weigh House was built in 1402.", "The Weigh House is in Ostrava."]
    assert all(f.source == "notes" for sf in found for f in sf.facts)
    assert {f.answer for sf in found for f in sf.facts} >= {"1402", "Ostrava"}


def test_tokens_keep_abbreviations_numbers_and_possessives():
    assert tokenize("Dr. Amos Pell's 4,200 lamps, 3.5 m, e.g. J. R. Tolliver.") == [
        "Dr.", "Amos", "Pell", "'s", "4,200", "lamps", ",", "3.5", "m", ",", "e.g.", "J.", "R.", "Tolliver", ".",
    ]  # fmt: skip


# -- three more invented documents, in other styles ------------------------------------------------
# A life (pronouns over several sentences, relatives, a surname several people share), a place (short
# references, compounds, "famous for", colours) and a company (a name that is no person, roles, counts).
BIOGRAPHY = """\
Edith Varden was a botanist from the town of Pellham. She was born on 12 May 1861 in Pellham. Her father, Samuel
Varden, was a watchmaker. Edith Varden studied at the Royal College of Dunmere. In 1884 she married the surveyor
Hugo Marlowe. The couple moved to the island of Tessel in 1886.

On Tessel she collected more than 4,000 plant specimens. Her most famous discovery is a blue orchid called the
Tessel Star. It grows only on the cliffs of the island. She described the orchid in a book titled Flowers of the
Western Isles. The book was published in 1893 by Harrow Press. Varden was elected to the Dunmere Botanical Society
in 1895. She became its first female president in 1901.

Her herbarium is kept in the Pellham Museum. It contains about 3,200 sheets. Varden trained as a schoolteacher
before she turned to botany. Her husband died in 1910. Edith Varden died in Tessel on 4 March 1922 at the age of
60. A glacier on the island is named after her. Her nephew, Tomas Varden, wrote her biography in 1950.
"""

BIOGRAPHY_QA = [
    ("What was Edith Varden's job?", "botanist"),  # an occupation, in several wordings
    ("What did Edith Varden do for a living?", "botanist"),
    ("Where was Edith Varden from?", "Pellham"),
    ("When was Edith Varden born?", "12 May 1861"),  # "She": the one person before
    ("Who was Edith Varden's father?", "Samuel Varden"),
    ("What was Samuel Varden's trade?", "watchmaker"),
    ("Who did Edith Varden marry?", "Hugo Marlowe"),
    ("What was Hugo Marlowe's profession?", "surveyor"),  # "the surveyor Hugo Marlowe"
    # "she" after "The couple moved ...": the main person, whose pronoun is known (not Hugo Marlowe)
    ("How many plant specimens did Edith Varden collect?", "more than 4,000"),
    ("Where did Edith Varden collect more than 4,000 plant specimens?", "Tessel"),
    ("What is Edith Varden's most famous discovery?", "the Tessel Star"),  # the name in "an orchid called ..."
    ("What is the name of Edith Varden's most famous discovery?", "the Tessel Star"),
    ("What is the Tessel Star?", "a blue orchid"),
    ("What colour is the Tessel Star?", "blue"),
    ("Where does the Tessel Star grow?", "the cliffs of Tessel"),  # "It": the name the copula gave
    ("In which book did Edith Varden describe the Tessel Star?", "Flowers of the Western Isles"),  # "the orchid"
    ("Who published Flowers of the Western Isles?", "Harrow Press"),  # "The book"
    ("When was Flowers of the Western Isles published?", "1893"),
    ("To which society was Edith Varden elected?", "the Dunmere Botanical Society"),  # "Varden": the main person
    ("Who was the first female president of the Dunmere Botanical Society?", "Edith Varden"),  # "its": the society
    ("When did Edith Varden become the Dunmere Botanical Society's first female president?", "1901"),
    ("In which museum is Edith Varden's herbarium kept?", "the Pellham Museum"),
    ("How many sheets does Edith Varden's herbarium contain?", "3,200"),
    ("What did Edith Varden train as before turning to botany?", "schoolteacher"),
    ("What did Edith Varden train to become?", "schoolteacher"),
    ("When did Edith Varden die?", "4 March 1922"),
    ("At what age did Edith Varden die?", "60"),
    ("Who was Edith Varden's nephew?", "Tomas Varden"),
]

TOWN = """\
Harrowgate is a market town in the county of Elmshire. It lies on the east bank of the river Wend. The town has a
population of about 11,000. Its oldest building is the church of St. Alder, which dates from the 12th century. The
church's tower is 41 metres tall.

The town's main industry was wool. In 1790 a canal was built to connect Harrowgate with the port of Saltmouth. The
canal was closed in 1958. The town hall stands on Bridge Street. It was designed by the architect Clara Fenn in
1874. The mayor of Harrowgate is Daniel Oduya.

Harrowgate is famous for a hard yellow cheese called Wend Gold. Each summer the town hosts the Harrowgate Fair, a
horse fair that dates from 1402. A weekly market is held in Cross Square every Tuesday. The local football club is
called Harrowgate Rovers. The club plays at Millfield Park. Its colours are green and white. The nearest railway
station is in Kelby. The river is crossed by a red iron bridge called the Wend Bridge. It was opened in 1881 by
Queen Mathilde.
"""

TOWN_QA = [
    ("What is Harrowgate?", "a market town"),
    ("In which county is Harrowgate?", "Elmshire"),
    ("On which river does Harrowgate lie?", "the river Wend"),  # a part of a place: which river, which bank
    ("On which bank of the river Wend does Harrowgate lie?", "the east bank"),
    ("What is the population of Harrowgate?", "about 11,000"),  # "the town": Harrowgate
    ("What is Harrowgate's oldest building?", "the church of St. Alder"),  # "Its": the subject before
    ("From which century does the church of St. Alder date?", "the 12th century"),
    ("How tall is the tower of the church of St. Alder?", "41 metres"),  # "the church's tower"
    ("What was Harrowgate's main industry?", "wool"),  # a bare noun is a value of an attribute
    ("When was the canal closed?", "1958"),
    ("On which street does the town hall of Harrowgate stand?", "Bridge Street"),  # "the town hall"
    ("Who designed the town hall of Harrowgate?", "Clara Fenn"),
    ("What was Clara Fenn's occupation?", "architect"),
    ("Who is the mayor of Harrowgate?", "Daniel Oduya"),
    ("What is Harrowgate famous for?", "Wend Gold"),
    ("What cheese is Harrowgate famous for?", "Wend Gold"),
    ("What colour is Wend Gold?", "yellow"),
    ("What fair does Harrowgate host each summer?", "the Harrowgate Fair"),  # the apposition names the kind
    ("What is the name of Harrowgate's summer fair?", "the Harrowgate Fair"),
    ("In which season does Harrowgate host the Harrowgate Fair?", "summer"),
    ("What is the Harrowgate Fair?", "a horse fair"),
    ("When does the Harrowgate Fair date from?", "1402"),  # the apposition's relative clause
    ("What is the name of the local football club?", "Harrowgate Rovers"),
    ("Where does Harrowgate Rovers play?", "Millfield Park"),  # "The club": what the document called so
    ("What are Harrowgate Rovers' colours?", "green and white"),  # a name is no person: "Its" is the club's
    ("Which bridge crosses the river Wend?", "the Wend Bridge"),  # "The river": the river Wend
    ("What colour is the Wend Bridge?", "red"),
]

COMPANY = """\
Brackwell Shipbuilding is a shipbuilding company based in the port of Drummore. It was founded in 1856 by Thomas
Brackwell, a carpenter from Leith Vale. The company's first ship was a fishing schooner named the Grey Gull. In 1880
Brackwell handed the firm to his son Arthur Brackwell. Arthur Brackwell moved the yard to the north quay in 1884.
The firm built its first steel ship in 1895.

The company was bought by the Kessler Group in 1967. Its headquarters are located on Dock Road. The current chief
executive of the company is Amara Lund. She joined the company as an engineer in 1998. The company employs about
1,400 people. Its largest ship is a ferry called the Northern Crown. The Northern Crown was launched in 2011. It
carries 900 passengers.

The company's logo is a red anchor inside a white circle. Brackwell Shipbuilding also runs an apprentice school in
Drummore. The school trains sixty apprentices each year. In 2020 the company opened a second yard in the town of
Kelby. The new yard builds small green ferries. Its manager is Joseph Oyelaran, a former naval officer.
"""

COMPANY_QA = [
    ("What is Brackwell Shipbuilding?", "a shipbuilding company"),  # a thing, so "It" is the company
    ("Where is Brackwell Shipbuilding based?", "Drummore"),  # "a company based in ...": the company is
    ("Who founded Brackwell Shipbuilding?", "Thomas Brackwell"),
    ("When was Brackwell Shipbuilding founded?", "1856"),
    ("What was Thomas Brackwell's trade?", "carpenter"),
    ("Where was Thomas Brackwell from?", "Leith Vale"),
    ("What was Brackwell Shipbuilding's first ship?", "the Grey Gull"),  # "the company": Brackwell Shipbuilding
    ("What was the Grey Gull?", "a fishing schooner"),
    ("Who did Thomas Brackwell hand the firm to?", "Arthur Brackwell"),  # "Brackwell": the one before
    ("Who was Thomas Brackwell's son?", "Arthur Brackwell"),  # "his son Arthur Brackwell"
    ("When did Thomas Brackwell hand the firm to his son Arthur Brackwell?", "1880"),  # "his" kept
    ("When did the firm build its first steel ship?", "1895"),
    ("Who bought Brackwell Shipbuilding?", "the Kessler Group"),
    ("On which street are Brackwell Shipbuilding's headquarters located?", "Dock Road"),  # "Its": the company's
    ("Who is the current chief executive of Brackwell Shipbuilding?", "Amara Lund"),
    ("What did Amara Lund join Brackwell Shipbuilding as?", "an engineer"),
    ("When did Amara Lund join Brackwell Shipbuilding as an engineer?", "1998"),
    ("How many people does Brackwell Shipbuilding employ?", "1,400"),
    ("What is Brackwell Shipbuilding's largest ship?", "the Northern Crown"),
    ("What is the Northern Crown?", "a ferry"),
    ("How many passengers does the Northern Crown carry?", "900"),
    ("What is Brackwell Shipbuilding's logo?", "a red anchor"),
    ("How many apprentices does the school train each year?", "sixty"),  # "each year" belongs to the count
    ("In which town did Brackwell Shipbuilding open a second yard?", "Kelby"),
    ("What colour are the small ferries the new yard builds?", "green"),
    ("Who is the new yard's manager?", "Joseph Oyelaran"),
]

# Pairs an earlier version of the rules produced, or that a careless pronoun rule would: each a false fact.
WRONG_PAIRS = [
    ("Who opened the river?", None),  # "It was opened ... by Queen Mathilde" after "The river is crossed by a bridge"
    ("Who opened the river Wend?", None),
    ("Who is Brackwell Shipbuilding?", None),  # a company, not a person
    ("What did Tomas Varden write?", None),  # "her biography": whose?
    ("Who is Wend Gold?", None),
    ("When does the school train sixty apprentices?", None),  # "each year" is no time of its own
    ("What trade did Edith Varden train in?", None),
]


@pytest.fixture(scope="module")
def other_documents() -> dict[str, TrainingData]:
    return {name: _facts(text) for name, text in (("biography", BIOGRAPHY), ("town", TOWN), ("company", COMPANY))}


@pytest.mark.parametrize(
    ("name", "expected"), [("biography", BIOGRAPHY_QA), ("town", TOWN_QA), ("company", COMPANY_QA)]
)
def test_other_documents_yield_their_facts(other_documents, name, expected):
    data = other_documents[name]
    for question, answer in expected:
        _asks(data, question, answer)
    assert data.stats["facts"] >= 25 and data.stats["sentences_without_facts"] <= 4
    questions = _questions(data)
    for question, _ in WRONG_PAIRS:
        assert question not in questions, question
    text = normalize_answer({"biography": BIOGRAPHY, "town": TOWN, "company": COMPANY}[name] + " " +
                            " ".join(data.documents))  # fmt: skip
    for fact in data.facts:  # every answer is stated by the document
        assert any(f" {normalize_answer(a)} " in f" {text} " for a in fact.answers), fact


@pytest.mark.parametrize("name", ["biography", "town", "company"])
def test_other_documents_questions_are_well_formed(other_documents, name):
    data = other_documents[name]
    pronouns = {"it", "he", "she", "him", "they", "them", "this", "these", "those"}
    for fact in data.facts:
        assert len(fact.answer.split()) <= MAX_ANSWER_WORDS and not {"her", "his", "its"} & set(fact.answer.split())
        for q in fact.questions:
            words = normalize_answer(q).split()
            assert q.endswith("?") and q[0].isupper() and "  " not in q and "'s'" not in q and "s's " not in q, q
            assert not set(words) & pronouns, q
            raw = q.rstrip("?").split()
            for k, word in enumerate(raw):  # a possessive pronoun only after what it stands for
                if word in ("its", "his", "her", "their"):
                    assert any(w[0].isupper() or w == "the" for w in raw[1:k]), q
            assert f" {normalize_answer(fact.answer)} " not in f" {normalize_answer(q)} ", q
    wordings = [len(f.questions) for f in data.facts]
    assert sum(wordings) / len(wordings) >= 2.3


# -- references: what "It", "She", "the guild" stand for, and when that is unclear ------------------
@pytest.mark.parametrize(
    ("text", "question", "answer"),
    [
        # "It" is the previous subject, the whole of it ("the guild's lantern"), not the guild
        ("The Tidewater Guild is a society of lamp-makers. The guild's oldest surviving lantern is kept in the "
         "Velmora Maritime Museum. It is known as the Widow's Eye.",
         "What is the Tidewater Guild's oldest surviving lantern known as?", "the Widow's Eye"),
        # "Its" + what a guild has (an emblem, a motto) after "the guild hall": the guild's
        ("The Tidewater Guild of Lantern Makers was founded in 1794. The guild hall stands on Copperwick Lane. Its "
         "emblem is a silver heron holding a brass key.",
         "What is the emblem of the Tidewater Guild of Lantern Makers?", "a silver heron"),
        ("The Tidewater Guild of Lantern Makers was founded in 1794. The guild hall stands on Copperwick Lane. Its "
         "emblem is a silver heron holding a brass key.",
         "What is the Tidewater Guild of Lantern Makers' emblem?", "a silver heron"),
        # "the guild hall": the hall of the guild; "the workshop": the one the document described
        ("The Tidewater Guild of Lantern Makers was founded in 1794. The guild hall stands on Copperwick Lane.",
         "On which street does the hall of the Tidewater Guild of Lantern Makers stand?", "Copperwick Lane"),
        ("The Tidewater Guild was founded in 1794. Its largest workshop is in Brisk Hollow. The workshop makes about "
         "nine hundred lanterns a year.",
         "How many lanterns does the largest workshop of the Tidewater Guild make each year?", "nine hundred"),
        # "the festival": the name an apposition gave a festival
        ("The Tidewater Guild was founded in 1794. Each autumn the guild holds the Night of Small Suns, a festival at "
         "which every member lights a lantern. The festival was first held in 1802.",
         "When was the Night of Small Suns first held?", "1802"),
        # a company is no person; "It" after its description is the company
        ("Brackwell Shipbuilding is a shipbuilding company. It was founded in 1856 by Thomas Brackwell.",
         "Who founded Brackwell Shipbuilding?", "Thomas Brackwell"),
        # "She" over a sentence that names no one; a gender told by a role
        ("Orsolya Venn was a glassblower. The craft was new in Velmora. She opened a workshop in 1840.",
         "When did Orsolya Venn open a workshop?", "1840"),
        ("Orsolya Venn was born in Kessa. She married in 1840. Her brother, Piet Venn, was a sailor. He drowned in "
         "1850.", "When did Piet Venn drown?", "1850"),
        # a possessive inside the sentence: the one phrase before it that it can stand for
        ("The Tidewater Guild of Lantern Makers was founded in 1794. In 1831 the guild elected Orsolya Venn as its "
         "second master.", "Who was the second master of the Tidewater Guild of Lantern Makers?", "Orsolya Venn"),
        ("Edith Varden was elected to the Dunmere Botanical Society in 1895. She became its first president in 1901.",
         "Who was the first president of the Dunmere Botanical Society?", "Edith Varden"),
        # "It" after a person's sentence: the thing she made, by its name
        ("Anna Brisk wrote a novel called The Grey Shore in 1901. It was published by Harrow Press.",
         "Who published The Grey Shore?", "Harrow Press"),
        # "It" after "The company's founder was ...": not the founder
        ("The company's founder was Thomas Brackwell. It grew quickly in the 1860s.",
         "In which decade did the company grow?", "the 1860s"),
    ],
)  # fmt: skip
def test_more_references_are_resolved(text, question, answer):
    _asks(_facts(text), question, answer)


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        # the guild or the lighthouse? a sentence that brought in a second thing leaves "It" unclear
        ("The guild built a lighthouse on Gull Rock. It was designed by Ilsa Brandt.", "Ilsa Brandt"),
        ("The river is crossed by a red iron bridge called the Wend Bridge. It was opened in 1881.", "1881"),
        # two persons, neither known to be a "she"
        ("Maren Tolliver met Ilsa Brandt in 1800. She founded the guild in 1802.", "1802"),
        # "her biography": the nephew's, or his aunt's?
        ("Edith Varden was a botanist. Her nephew, Tomas Varden, wrote her biography in 1950.", "1950"),
        # the sentence before says nothing "It" could be
        ("The guild was founded in 1794. Storms are common on that coast. It was rebuilt in 1850.", "1850"),
        # "held it": the post she was elected to, not the guild
        ("The guild was founded in 1794. Orsolya Venn was elected by the guild as its master in 1831 and she held it "
         "until 1850.", "1850"),
    ],
)  # fmt: skip
def test_unclear_references_yield_no_wrong_facts(text, answer):
    data = _facts(text)
    last = split_sentences(text)[-1]
    assert not [f for f in data.facts if f.sentence == last and answer in f.answers]
    assert not any(a.startswith(("her ", "his ", "its ")) for f in data.facts for a in f.answers)


# -- the shapes added for the demo document's sentences --------------------------------------------
MORE_SHAPES = [
    # occupations: several wordings, the noun as the answer
    ("Maren Tolliver was a glassblower from the island of Skarra.", "What was Maren Tolliver's trade?", "glassblower"),
    ("Maren Tolliver was a glassblower from the island of Skarra.", "What was Maren Tolliver's occupation?",
     "a glassblower"),
    ("Maren Tolliver was a glassblower from the island of Skarra.", "What did Maren Tolliver do for a living?",
     "glassblower"),
    ("Maren Tolliver was a glassblower from the island of Skarra.", "Which island was Maren Tolliver from?", "Skarra"),
    ("Teodor Quillane was born in the town of Ardmere and trained as a clockmaker before he joined the guild.",
     "What did Teodor Quillane train as before joining the guild?", "a clockmaker"),
    ("Teodor Quillane was born in the town of Ardmere and trained as a clockmaker before he joined the guild.",
     "What was Teodor Quillane's job before joining the guild?", "clockmaker"),
    ("Teodor Quillane was born in the town of Ardmere and trained as a clockmaker before he joined the guild.",
     "What did Teodor Quillane train as?", "a clockmaker"),
    ("Teodor Quillane was born in the town of Ardmere and trained as a clockmaker before he joined the guild.",
     "In which town was Teodor Quillane born?", "Ardmere"),
    # a role: who was elected as what, and when
    ("In 1831 the guild elected Orsolya Venn as its second master.", "Who did the guild elect as its second master?",
     "Orsolya Venn"),
    ("In 1831 the guild elected Orsolya Venn as its second master.", "Who was the second master of the guild?",
     "Orsolya Venn"),
    ("In 1831 the guild elected Orsolya Venn as its second master.", "Who became the guild's second master?",
     "Orsolya Venn"),
    ("In 1831 the guild elected Orsolya Venn as its second master.", "When was Orsolya Venn elected?", "1831"),
    ("In 1831 the guild elected Orsolya Venn as its second master.",
     "When did the guild elect Orsolya Venn as its second master?", "1831"),
    # what kind of thing the object is: an apposition, "called"; its colour
    ("Each autumn the guild holds the Night of Small Suns, a festival at which every member lights a lantern.",
     "What festival does the guild hold each autumn?", "the Night of Small Suns"),
    ("Each autumn the guild holds the Night of Small Suns, a festival at which every member lights a lantern.",
     "What is the name of the guild's autumn festival?", "the Night of Small Suns"),
    ("Each autumn the guild holds the Night of Small Suns, a festival at which every member lights a lantern.",
     "What is the Night of Small Suns?", "a festival"),
    ("Each autumn the guild holds the Night of Small Suns, a festival at which every member lights a lantern.",
     "How often does the guild hold the Night of Small Suns?", "every autumn"),
    ("Orsolya Venn also wrote a handbook called The Patient Flame.", "What handbook did Orsolya Venn write?",
     "The Patient Flame"),
    ("Orsolya Venn also wrote a handbook called The Patient Flame.",
     "What is the title of the handbook Orsolya Venn wrote?", "The Patient Flame"),
    ("Orsolya Venn also wrote a handbook called The Patient Flame.", "What did Orsolya Venn write?",
     "The Patient Flame"),
    ("Orsolya Venn also wrote a handbook called The Patient Flame.", "Who wrote The Patient Flame?", "Orsolya Venn"),
    ("Orsolya Venn introduced the blue signal glass that ships still use.",
     "What colour is the signal glass Orsolya Venn introduced?", "blue"),
    ("Orsolya Venn introduced the blue signal glass that ships still use.",
     "What colour of signal glass did Orsolya Venn introduce?", "blue"),
    # a participle or an -ing phrase inside the complement ends it
    ("The guild's emblem is a silver heron holding a brass key.", "What is the guild's emblem?", "a silver heron"),
    ("Brackwell Shipbuilding is a shipbuilding company based in the port of Drummore.",
     "Where is Brackwell Shipbuilding based?", "Drummore"),
    # counts: a time word after the noun, a comparison that is part of the number
    ("The guild has 312 members today.", "How many members does the guild have today?", "312"),
    ("Edith Varden collected more than 4,000 plant specimens.", "How many plant specimens did Edith Varden collect?",
     "more than 4,000"),
    ("The workshop makes about nine hundred lanterns a year.", "How many lanterns does the workshop make a year?",
     "nine hundred"),
    # famous for; a place of a kind the name says; a name given by "call"
    ("Harrowgate is famous for a hard yellow cheese called Wend Gold.", "What is Harrowgate known for?", "Wend Gold"),
    ("The guild's oldest surviving lantern is kept in the Velmora Maritime Museum.",
     "In which museum is the guild's oldest surviving lantern kept?", "the Velmora Maritime Museum"),
    ("The guild's oldest surviving lantern is kept in the Velmora Maritime Museum.",
     "Where can the guild's oldest surviving lantern be seen?", "the Velmora Maritime Museum"),
    ("The guild called the festival the Night of Lamps.", "What did the guild call the festival?",
     "the Night of Lamps"),
    ("A ferry called the Northern Crown carries 900 passengers.",
     "How many passengers does the Northern Crown carry?", "900"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "question", "answer"), MORE_SHAPES)
def test_more_shapes(text, question, answer):
    _asks(_facts(text), question, answer)


def test_long_names_get_a_short_wording_and_a_plural_possessive():
    data = _facts(
        "The Tidewater Guild of Lantern Makers was founded in 1794 by Maren Tolliver. In 1831 the guild elected "
        "Orsolya Venn as its second master. The motto of the guild is Light before harbour."
    )
    questions = _questions(data)
    _asks(data, "When was the guild founded?", "1794")  # the document's own short form, once per fact
    _asks(data, "When was the Tidewater Guild of Lantern Makers founded?", "1794")
    _asks(data, "What is the Tidewater Guild of Lantern Makers' motto?", "Light before harbour")
    # the subject is not said twice in one question: "its" stays where the guild was named before it
    _asks(data, "When did the Tidewater Guild of Lantern Makers elect Orsolya Venn as its second master?", "1831")
    assert not any("Makers's" in q for q in questions)
    assert not any(q.count("Tidewater Guild") > 1 for q in questions)


# -- sentences, passages, markdown ----------------------------------------------------------------
def test_sentence_splitting_handles_abbreviations_initials_and_decimals():
    text = (
        "Dr. Amos Pell lived on St. Clair Street. The mirror is 3.5 metres wide. J. R. Ostrander found it, "
        'e.g. in 1871. The U.S. Navy arrived. She asked: "Is it lit?" The guild said yes! Mr. Venn left.'
    )
    assert split_sentences(text) == [
        "Dr. Amos Pell lived on St. Clair Street.",
        "The mirror is 3.5 metres wide.",
        "J. R. Ostrander found it, e.g. in 1871.",
        "The U.S. Navy arrived.",
        'She asked: "Is it lit?"',
        "The guild said yes!",
        "Mr. Venn left.",
    ]
    assert split_sentences("  \n ") == []
    assert split_sentences("Line one\ncontinues here. Next one.") == ["Line one continues here.", "Next one."]


def test_passages_split_at_blank_lines():
    assert split_passages("A one. A two.\n\n\nB one.\n") == [["A one.", "A two."], ["B one."]]


def test_markdown_is_reduced_to_prose():
    md = """# Heading

Some **bold** and *emphasis* and _under_ with a [link](http://x.org) and `code`.
![a picture](p.png)

```python
x = "The guild was founded in 1066."
```

- First item
- Second item.
1. Numbered item

> A quoted line.

| a | b |
|---|---|

<b>Tagged</b> text. snake_case_name stays.
"""
    text = markdown_to_text(md)
    assert "#" not in text and "**" not in text and "http" not in text and "1066" not in text
    assert "Some bold and emphasis and under with a link and code." in text
    assert "First item." in text and "Second item." in text and "Numbered item." in text
    assert "A quoted line." in text and "Tagged text." in text and "snake_case_name" in text
    sentences = [s for p in split_passages(text) for s in p]
    assert "First item." in sentences and "Heading" not in " ".join(sentences)


def test_markdown_heading_starts_a_new_passage(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("# The Weigh House\nThe Weigh House is in Ostrava.\n## History\nIt was built in 1402.\n")
    data = build_training_data(path, heldout_fraction=0)
    _asks(data, "When was the Weigh House built?", "1402")  # "It": the document's topic
    assert data.sources[0].name == str(path)


# -- inputs ---------------------------------------------------------------------------------------
def test_files_folders_jsonl_and_datasets(tmp_path):
    (tmp_path / "b.txt").write_text("The Weigh House was built in 1402.")
    (tmp_path / "a.md").write_text("# Notes\n\nThe bridge was completed in *May 1867*.")
    (tmp_path / "c.jsonl").write_text(
        json.dumps({"text": "Halvik is the capital of the Morrow Isles."}) + "\n\n"
        + json.dumps({"text": "The poem was written by Sella Quist.", "id": 2}) + "\n"
    )  # fmt: skip
    (tmp_path / "skip.csv").write_text("not, read")
    (tmp_path / ".hidden.txt").write_text("The secret was kept by Anna Brisk.")
    data = build_training_data(tmp_path, heldout_fraction=0)
    assert [s.name for s in data.sources] == [
        str(tmp_path / "a.md"), str(tmp_path / "b.txt"), f"{tmp_path / 'c.jsonl'}:1", f"{tmp_path / 'c.jsonl'}:3",
    ]  # fmt: skip
    assert data.stats["documents"] == 4
    _asks(data, "In what year was the bridge completed?", "1867")
    _asks(data, "Who wrote the poem?", "Sella Quist")
    assert not any("Anna Brisk" in f.answers for f in data.facts)
    # the same texts as strings, Paths, a mixed list, or a datasets.Dataset
    same = build_training_data([str(tmp_path / "b.txt"), tmp_path / "a.md"], heldout_fraction=0)
    assert same.stats["documents"] == 2
    from datasets import Dataset

    ds = Dataset.from_dict({"text": ["The Weigh House was built in 1402.", "The poem was written by Sella Quist."]})
    from_ds = build_training_data(ds, heldout_fraction=0)
    assert [s.name for s in from_ds.sources] == ["dataset[0]", "dataset[1]"]
    _asks(from_ds, "Who wrote the poem?", "Sella Quist")


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda p: str(p / "missing.md"), ModelNotFoundError, "missing.md.*does not exist"),
        (lambda p: p / "missing", ModelNotFoundError, "does not exist"),
        (lambda p: _write(p / "notes.pdf", b"%PDF"), InvalidInputError, r"notes\.pdf.*unsupported extension '\.pdf'"),
        (lambda p: _write(p / "bin.txt", b"ab\x00cd"), InvalidInputError, r"bin\.txt.*binary"),
        (lambda p: _write(p / "latin.txt", "caf\xe9".encode("latin-1")), InvalidInputError, r"latin\.txt.*not UTF-8"),
        (lambda p: _write(p / "empty.md", b"  \n"), InvalidInputError, r"empty\.md is empty"),
        (lambda p: _write(p / "bad.jsonl", b'{"text": "A."}\n{oops\n'), InvalidInputError, r"bad\.jsonl:2.*JSON"),
        (lambda p: _write(p / "nokey.jsonl", b'{"body": "A."}\n'), InvalidInputError, r"nokey\.jsonl:1.*'text'"),
        (lambda p: _mkdir(p / "empty_dir"), InvalidInputError, "holds no"),
        (lambda p: ["The Weigh House was built in 1402.", "   "], InvalidInputError, r"text\[1\] is empty"),
        (lambda p: ["A \x00 binary string."], InvalidInputError, "NUL"),
        (lambda p: [42], InvalidInputError, "document 0 has type int"),
        (lambda p: [], InvalidInputError, "no documents"),
        (lambda p: None, InvalidInputError, "no documents"),
        (lambda p: "Hello there, friend", InvalidInputError, r"too short to yield a question: found 0 facts.*"
                                                             r"1 sentences.*min_facts=1"),
    ],
)  # fmt: skip
def test_bad_inputs_are_named(tmp_path, make, error, match):
    with pytest.raises(error, match=match) as info:
        build_training_data(make(tmp_path))
    assert isinstance(info.value, AdaptiveMoEError)


def test_dataset_without_text_column():
    from datasets import Dataset

    with pytest.raises(InvalidInputError, match="'text' column"):
        build_training_data(Dataset.from_dict({"body": ["x"]}))


def test_min_facts():
    text = "The Weigh House was built in 1402."
    assert build_training_data(text, min_facts=1).stats["facts"] == 1
    with pytest.raises(InvalidInputError, match=r"found 1 facts .* min_facts=5"):
        build_training_data(text, min_facts=5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"restatements": -1}, "restatements"),
        ({"heldout_fraction": 1.0}, "heldout_fraction"),
        ({"heldout_fraction": -0.1}, "heldout_fraction"),
        ({"min_facts": -1}, "min_facts"),
        ({"model_questions": True}, "base="),
        ({"questions": "What?"}, "not a string"),
        ({"questions": [("", "a")]}, r"questions\[0\].*question"),
        ({"questions": [("Q?", [])]}, r"questions\[0\].*answer"),
        ({"heldout_questions": [42]}, r"heldout_questions\[0\] has type int"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        build_training_data("The Weigh House was built in 1402.", **kwargs)


def test_path_like_strings_are_paths_and_prose_is_text(tmp_path):
    with pytest.raises(ModelNotFoundError):
        build_training_data("guild_notes.md")
    with pytest.raises(ModelNotFoundError):
        build_training_data("docs/guild")
    data = build_training_data("The Weigh House was built in 1402. See docs/guild for more.", heldout_fraction=0)
    assert data.sources[0].name == "text[0]"


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _mkdir(path):
    path.mkdir()
    return path


# -- the held-out split ---------------------------------------------------------------------------
def test_heldout_split_is_by_wording(tidewater):
    by_question = {q: f for f in tidewater.facts for q in f.questions}
    trained = {q for q, _ in tidewater.qa_pairs}
    assert tidewater.heldout and not trained & {q for q, _ in tidewater.heldout}
    for question, answers in tidewater.heldout:
        fact = by_question[question]
        assert answers == fact.answers
        others = [q for q in fact.questions if q != question]
        assert others and all(q in trained for q in others)  # the fact is still trained on
    # one wording per held-out fact, about heldout_fraction of all the questions
    assert len({id(by_question[q]) for q, _ in tidewater.heldout}) == len(tidewater.heldout)
    total = sum(len(f.questions) for f in tidewater.facts)
    assert len(tidewater.heldout) == round(0.2 * total)
    assert tidewater.stats["qa_heldout"] == len(tidewater.heldout)
    assert tidewater.stats["qa_train"] + tidewater.stats["qa_heldout"] == total


def test_heldout_wording_is_the_least_like_the_trained_ones():
    data = build_training_data("The Weigh House was built in 1402.", heldout_fraction=0.3)
    # "When ...?" shares fewest words with "In what year ...?" / "What year ...?"
    assert data.heldout == [("When was the Weigh House built?", ["1402"])]


def test_heldout_split_is_deterministic_for_a_seed(tidewater):
    again = build_training_data(TIDEWATER, seed=0)
    assert again.heldout == tidewater.heldout and again.train == tidewater.train
    assert again.sha256 == tidewater.sha256
    other = build_training_data(TIDEWATER, seed=1)
    assert other.heldout != tidewater.heldout and other.sha256 != tidewater.sha256
    none = build_training_data(TIDEWATER, heldout_fraction=0)
    assert none.heldout == [] and none.stats["qa_train"] == sum(len(f.questions) for f in none.facts)


# -- the user's questions -------------------------------------------------------------------------
def test_user_questions_train_and_heldout_questions_evaluate():
    qa_object = SimpleNamespace(question="Which stone is the Weigh House made of?", answers=["granite"])
    data = build_training_data(
        "The Weigh House was built in 1402.",
        questions=[("What is the Weigh House?", "a market hall"),
                   ("Who owns the Weigh House?", ["the town", "Ostrava"]),
                   {"question": "Where is the Weigh House?", "answer": "Ostrava"}, qa_object,
                   ("When was the Weigh House built?", "in 1402")],
        heldout_questions=[{"question": "How old is the Weigh House?", "answers": ["over 600 years"]}],
        heldout_fraction=0,
    )  # fmt: skip
    pairs = data.qa_pairs
    assert ("What is the Weigh House?", "a market hall") in pairs
    assert ("Who owns the Weigh House?", "the town") in pairs
    assert ("Which stone is the Weigh House made of?", "granite") in pairs
    assert ("How old is the Weigh House?", ["over 600 years"]) in data.heldout
    assert not any(q == "How old is the Weigh House?" for q, _ in pairs)
    # a generated question the user also asked is not asked twice
    assert [q for q, _ in pairs].count("When was the Weigh House built?") == 1
    assert data.stats["user_questions"] == 5 and data.stats["user_heldout_questions"] == 1
    assert data.stats["duplicates_removed"] == 1
    # one pair on its own is accepted too; user questions alone satisfy min_facts
    alone = build_training_data("Hello there, friend", questions=("What is the Weigh House?", "a market hall"))
    assert alone.qa_pairs == [("What is the Weigh House?", "a market hall")]


# -- questions the base model writes --------------------------------------------------------------
class _StubBase:
    """Stands in for a BaseModel: answers a prompt asking for the answer X with ``replies[X]``."""

    fingerprint = "stub-fingerprint"

    def __init__(self, replies: dict[str, str]):
        self.replies, self.prompts = replies, []

    def generate_with_signals(self, prompts, max_new_tokens=24):
        self.prompts += list(prompts)
        answers = [p[0]["content"].split('whose answer is "')[1].split('"')[0] for p in prompts]
        return [SimpleNamespace(text=self.replies.get(a, "I do not know.")) for a in answers]


def test_model_questions_are_filtered():
    text = "The Weigh House was built in 1402 by Jonas Keel. It stands in Ostrava."
    replies = {
        "1402": "Question: In which year did builders complete the Weigh House in Ostrava?\nMore text",  # kept
        "Jonas Keel": "Who was it built by?",  # a pronoun: not self-contained
        "Ostrava": "Where is the Weigh House, Ostrava or Halvik?",  # contains the answer
        "Weigh House": "Jonas Keel built the Weigh House.",  # no question
    }
    stub = _StubBase(replies)
    data = build_training_data(text, base=stub, model_questions=True, heldout_fraction=0)
    assert stub.prompts and all(isinstance(p, list) and p[0]["role"] == "user" for p in stub.prompts)
    assert any('whose answer is "1402"' in p[0]["content"] for p in stub.prompts)
    written = [f for f in data.facts if f.relation == "model question"]
    assert [(f.questions, f.answer) for f in written] == [
        (("In which year did builders complete the Weigh House in Ostrava?",), "1402")
    ]
    assert data.stats["model_questions"] == 1 and data.stats["model_questions_rejected"] == 3
    assert {p[0]["content"].split('answer is "')[1].split('"')[0] for p in stub.prompts} == set(replies)
    assert ("In which year did builders complete the Weigh House in Ostrava?", "1402") in data.qa_pairs
    assert data.settings["base"] == "stub-fingerprint"
    assert data.sha256 != build_training_data(text, heldout_fraction=0).sha256


def test_model_questions_off_by_default():
    stub = _StubBase(["What?"])
    build_training_data("The Weigh House was built in 1402.", base=stub)
    assert stub.prompts == []


# -- the result -----------------------------------------------------------------------------------
def test_training_data_exports(tidewater):
    ds = tidewater.to_dataset()
    assert ds.column_names == ["kind", "prompt", "text", "answers"]
    kinds = ds["kind"]
    assert kinds.count("qa") == tidewater.stats["qa_train"]
    assert kinds.count("heldout") == tidewater.stats["qa_heldout"]
    assert kinds.count("document") == len(tidewater.documents)
    row = ds[kinds.index("qa")]
    assert row["prompt"].endswith("?") and row["text"]
    d = tidewater.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["sha256"] == tidewater.sha256 and len(d["facts"]) == len(tidewater.facts)
    assert d["sources"][0]["chars"] == len(TIDEWATER)
    summary = tidewater.summary()
    assert f"{len(tidewater.facts)} facts" in summary and "held out" in summary
    assert isinstance(tidewater.facts[0], Fact)


def test_sha256_covers_text_and_settings(tidewater):
    assert len(tidewater.sha256) == 64
    assert build_training_data(TIDEWATER, restatements=2).sha256 != tidewater.sha256
    assert build_training_data(TIDEWATER + "\nThe bell is named Old Tom.").sha256 != tidewater.sha256


def test_the_hand_written_english_rules_stay_in_small_modules_over_their_word_lists():
    """The rule-based extractor is word lists (``data/qa_patterns.json``) plus modules under 600 lines each."""
    from pathlib import Path

    import adaptive_moe.creation as creation

    modules = sorted(Path(creation.__file__).parent.glob("qa_*.py"))
    assert len(modules) >= 2
    sizes = {m.name: len(m.read_text("utf-8").splitlines()) for m in modules}
    assert all(n < 600 for n in sizes.values()), sizes
    lexicon = json.loads((Path(creation.__file__).parents[1] / "data" / "qa_patterns.json").read_text("utf-8"))
    assert len(lexicon["regular_verbs"]) > 100 and len(lexicon["occupations"]) > 20
