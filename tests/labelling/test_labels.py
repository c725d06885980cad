import numpy as np
import pandas as pd
import pytest

from ctxtag.labelling.labels import context_matrix, labels_from_counts, playlist_counts
from tests.conftest import shared_file


def _entries(playlists: dict[str, list[str]]) -> pd.DataFrame:
    rows = [(p, t) for p, tracks in playlists.items() for t in tracks]
    return pd.DataFrame(rows, columns=["playlist_id", "track_id"])


def test_paper_worked_example_dance_and_party_not_chill():
    # a track in 5 "dance", 3 "party" and 1 "chill" playlists -> dance and party (ICASSP 2020 §3.1)
    titles = ["dance"] * 5 + ["party"] * 3 + ["chill"]
    ids = [f"p{i}" for i in range(len(titles))]
    contexts = ("chill", "dance", "party")
    entries = _entries({p: ["x"] for p in ids})
    track_ids, counts = playlist_counts(entries, pd.Index(ids), context_matrix(titles, contexts))
    assert list(track_ids) == ["x"]
    assert counts.tolist() == [[1, 5, 3]]
    y = labels_from_counts(counts, min_playlists=3)
    assert dict(zip(contexts, y[0].tolist(), strict=True)) == {"chill": 0, "dance": 1, "party": 1}


def test_counts_are_distinct_playlists_and_skip_unknown_playlists():
    contexts = ("dance", "party")
    entries = _entries({"a": ["t1", "t1", "t2"], "b": ["t1"], "zz": ["t2"]})
    ids = pd.Index(["a", "b"])
    track_ids, counts = playlist_counts(entries, ids, context_matrix(["dance party", "party"], contexts))
    got = dict(zip(track_ids, counts.tolist(), strict=True))
    assert got == {"t1": [1, 2], "t2": [1, 1]}


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
