import numpy as np
import pandas as pd
import pytest

from ctxtag.labelling.labels import context_counts, context_matrix, labels_from_counts
from tests.conftest import shared_file


def _counts(playlists: dict[str, list[str]], titles: list[str], contexts: tuple[str, ...],
            kept: list[str] | None = None) -> dict[str, list[int]]:
    """n_ic per track, the playlists and tracks given as text and coded here."""
    ids = list(playlists)
    pairs = [(p, t) for p, tracks in playlists.items() for t in tracks]
    entry_playlist = np.array([ids.index(p) for p, _ in pairs])
    entry_track, tracks = pd.factorize(np.array([t for _, t in pairs], dtype=object))
    keep = np.array([kept is None or p in kept for p in ids])
    n_ic = context_counts(entry_playlist, entry_track, keep, context_matrix(titles, contexts), len(tracks))
    return {t: n_ic[i].tolist() for i, t in enumerate(tracks)}


def test_paper_worked_example_dance_and_party_not_chill():
    # a track in 5 "dance", 3 "party" and 1 "chill" playlists -> dance and party (ICASSP 2020 §3.1)
    titles = ["dance"] * 5 + ["party"] * 3 + ["chill"]
    contexts = ("chill", "dance", "party")
    counts = _counts({f"p{i}": ["x"] for i in range(len(titles))}, titles, contexts)
    assert counts == {"x": [1, 5, 3]}
    y = labels_from_counts(np.array([counts["x"]]), min_playlists=3)
    assert dict(zip(contexts, y[0].tolist(), strict=True)) == {"chill": 0, "dance": 1, "party": 1}


def test_counts_skip_playlists_not_kept_and_count_every_context_a_title_names():
    contexts = ("dance", "party")
    got = _counts({"a": ["t1", "t2"], "b": ["t1"], "dropped": ["t2", "t3"]},
                  ["dance party", "party", "dance"], contexts, kept=["a", "b"])
    assert got == {"t1": [1, 2], "t2": [1, 1], "t3": [0, 0]}


def test_counts_of_many_multi_context_playlists_match_a_dense_product():
    rng = np.random.default_rng(0)
    contexts = ("chill", "dance", "party", "sad")
    words = np.array(["chill", "dance", "party", "sad", "misc"])
    titles = [" ".join(rng.choice(words, size=rng.integers(1, 4))) for _ in range(300)]
    playlists = {f"p{i}": [f"t{j}" for j in rng.choice(50, size=rng.integers(1, 10), replace=False)]
                 for i in range(300)}
    kept = [p for p in playlists if rng.random() < 0.7]
    got = _counts(playlists, titles, contexts, kept)
    ctx = context_matrix(titles, contexts)
    for t, row in got.items():
        has = np.array([t in playlists[p] and p in kept for p in playlists])
        assert row == (has.astype(int) @ ctx).tolist()


def test_context_matrix_marks_every_named_context():
    m = context_matrix(["Chill & Relax", "nothing here", "#sad"], ("chill", "relax", "sad"))
    assert m.tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 1]]


@pytest.mark.realdata
def test_real_labels_are_counts_at_least_three():
    hot = pd.read_csv(shared_file("deezer_context", "balanced_ground_truth_hot_vector.csv"))
    cnt = pd.read_csv(shared_file("deezer_context", "balanced_ground_truth_track_count.csv"))
    cnt = cnt.set_index("song_id").loc[hot["song_id"]]
    ref = hot.iloc[:, 1:].to_numpy()

    def cells_off(threshold: int) -> int:
        return int((labels_from_counts(cnt.to_numpy(), threshold) != ref).sum())

    # ">= 3" reproduces the released labels but for 36 of 748,935 cells, where the file has a
    # label with a count of 0 (artefacts of the release); the prose's "> 3" is far off.
    # (The release zeroes counts below 3, so ">= 1" and ">= 2" cannot be told apart here.)
    assert cells_off(3) <= 36
    assert cells_off(4) > 100 * cells_off(3)
    assert not np.isin(cnt.to_numpy(), [1, 2]).any()
