"""creation.languages: a document that reads as another language than its base's is refused before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig, load_base_model
from adaptive_moe.documents.language import check_languages, reading_language
from adaptive_moe.errors import ConfigError, InvalidInputError

CORPUS = Path(__file__).resolve().parents[2] / "benchmarks" / "corpus"
FRENCH = (
    "Le lac de Tessaly est un lac d'eau douce situé dans les hautes terres, à une altitude de mille mètres. Il "
    "mesure environ quatorze kilomètres de long et trois de large. Le seul village sur la rive est connu pour son "
    "poisson fumé, et on y vient en hiver pour patiner sur la glace."
)
GERMAN = (
    "Der See liegt im Hochland auf einer Höhe von tausend Metern. Er ist etwa vierzehn Kilometer lang und drei "
    "Kilometer breit. Das einzige Dorf am Ufer ist für seinen geräucherten Fisch bekannt, und im Winter kommen "
    "viele Leute zum Schlittschuhlaufen."
)
RUSSIAN = (
    "Озеро находится в высокогорье на высоте тысячи метров. Его длина около четырнадцати километров, а ширина "
    "три километра. Единственная деревня на берегу известна своей копчёной рыбой, а зимой сюда приезжают "
    "кататься на коньках многие люди со всей округи."
)


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*/*.md"))[::4], ids=lambda p: p.stem)
def test_english_documents_of_every_genre_read_as_english(path):
    lang, scores = reading_language(path.read_text())
    assert lang == "en", scores


@pytest.mark.parametrize(("text", "lang"), [(FRENCH, "fr"), (GERMAN, "de")])
def test_other_languages_read_as_themselves(text, lang):
    assert reading_language(text)[0] == lang
    assert reading_language(text, allowed=("en", lang))[0] == lang


def test_another_script_reads_as_none_of_the_allowed_languages_and_a_short_text_is_not_judged():
    assert reading_language(RUSSIAN)[0] is None
    assert reading_language("Bonjour à tous, merci.") == ("en", {})  # too few words to tell


def test_check_languages_names_the_document_and_the_setting():
    with pytest.raises(InvalidInputError, match=r"reads as 'fr'.*creation\.languages is \['en'\]"):
        check_languages([FRENCH], ["en"])
    with pytest.raises(InvalidInputError, match=r"reads as none of \['en'\]"):
        check_languages([RUSSIAN], ["en"])
    check_languages([FRENCH], ["en", "fr"])
    check_languages([RUSSIAN, FRENCH], [])  # [] accepts any
    check_languages([str(p) for p in sorted(CORPUS.glob("test/*.md"))], ["en"])


def test_the_setting_takes_wordfreq_codes_only():
    assert AdaptiveMoEConfig().creation.languages == ["en"]
    assert AdaptiveMoEConfig().replace(**{"creation.languages": ["en", "fr"]}).creation.languages == ["en", "fr"]
    with pytest.raises(ConfigError, match=r"languages: \['xx'\] unknown; allowed: wordfreq codes"):
        AdaptiveMoEConfig().replace(**{"creation.languages": ["en", "xx"]})


@pytest.mark.parametrize("method", ["retrieval", "rules", "augment"])
def test_create_expert_refuses_a_french_document_before_any_work(tiny_llama_dir, tmp_path, method):
    base = load_base_model(name_or_path=str(tiny_llama_dir), device="cpu")
    cfg = AdaptiveMoEConfig().replace(workspace=str(tmp_path / "ws"), **{"creation.method": method})
    doc = tmp_path / "lac.md"
    doc.write_text(FRENCH)
    with AdaptiveMoE(cfg, base=base) as moe:
        with pytest.raises(InvalidInputError, match=r"lac\.md' reads as 'fr'"):
            moe.create_expert("lac", documents=[str(doc)], progress=False)
        assert moe.experts.names() == [] and not (tmp_path / "ws" / "creating" / "lac").exists()
