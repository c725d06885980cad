import pytest

from ctxtag.labelling.matcher import match_contexts, match_many, normalise
from ctxtag.labelling.title_agreement import agreement
from tests.conftest import CONTEXTS, shared_file


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("#Workout!!", {"workout"}),
        ("workout", {"workout"}),          # not also "work"
        ("homework", set()),
        ("Work hard", {"work"}),
        ("WORKOUT & party", {"workout", "party"}),
        ("chill_vibes", {"chill"}),        # underscore separates words
        ("chillout lounge", set()),        # a different keyword of the authors' list
        ("Música para RELAX", {"relax"}),
        ("sleep😴", {"sleep"}),
        ("carpool karaoke", set()),
        ("açúcar", set()),                 # accents stripped: "acucar" is one word, not "car"
        ("~dance~ (2019)", {"dance"}),
        ("party2019", set()),              # digits are part of a word
        ("", set()),
        ("relax™ hits", {"relax"}),        # a symbol separates words; it is not spelt "tm"
        ("Chill® & Sleep℠", {"chill", "sleep"}),
        ("ＷＯＲＫＯＵＴ ｍｉｘ", {"workout"}),  # full-width letters fold to their letters
        ("ﬁt party", {"party"}),           # the ligature is "fit", not a context
    ],
)
def test_match_contexts_edge_cases(title, expected):
    assert match_contexts(title, CONTEXTS) == expected


def test_accent_and_case_insensitive_keywords():
    assert match_contexts("Moment de DÉTENTE", ["détente"]) == {"détente"}
    assert match_contexts("Moment de detente", ["Détente"]) == {"Détente"}
    assert normalise("ÇA Été") == "ca ete"


def test_multi_word_keyword_needs_consecutive_words():
    assert match_contexts("Road-Trip 2024", ["road trip"]) == {"road trip"}
    assert match_contexts("road to the trip", ["road trip"]) == set()


def test_match_many_equals_single_calls():
    titles = ["party", "homework", "party", "#Chill"]
    assert match_many(titles, CONTEXTS) == [match_contexts(t, CONTEXTS) for t in titles]


def test_keyword_without_letters_is_rejected():
    with pytest.raises(ValueError, match="no letters"):
        match_contexts("x", ["!!"])


@pytest.mark.realdata
def test_agreement_with_authors_matches_on_real_titles():
    path = shared_file("playlist_titles", "deezer_playlist_titles.tsv")
    result = agreement(path, CONTEXTS)
    assert result["titles"] == 60_000
    assert result["compared"] > 30_000
    assert result["agreement"] >= 0.99
    # every disagreement is a title where the authors split a word at a non-ASCII letter
    # ("açúcar" -> "a", "car"; "chilläx" -> "chill"): the matched keyword never stands alone
    for d in result["disagreements"]:
        assert any(ord(ch) > 127 for ch in d["title"]), d
