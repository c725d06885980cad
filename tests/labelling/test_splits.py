import numpy as np
import pandas as pd
import pytest

from ctxtag.labelling.splits import group_ids, iterative_stratification, split_report
from tests.conftest import shared_file


def test_groups_join_tracks_sharing_artist_or_album():
    artists = ["a1", "a1", "a2", "a3", None]
    albums = ["x", "y", "y", "z", "w"]
    g = group_ids(artists, albums)
    assert g[0] == g[1] == g[2]            # a1 links 0-1, album y links 1-2
    assert len({g[0], g[3], g[4]}) == 3


def _world(seed: int = 0, n_artists: int = 400):
    rng = np.random.default_rng(seed)
    artist = rng.integers(0, n_artists, size=3000)
    album = artist * 3 + rng.integers(0, 3, size=3000)
    y = (rng.random((3000, 8)) < np.linspace(0.05, 0.5, 8)).astype(np.uint8)
    return y, artist.astype(str), album.astype(str)


def test_no_artist_or_album_in_two_splits_and_ratios_close():
    y, artists, albums = _world()
    split = iterative_stratification(y, group_ids(artists, albums), [0.65, 0.10, 0.25], seed=1)
    report = split_report(y, split, [f"c{i}" for i in range(8)], artists, albums)
    assert report["overlap"] == {"artists": 0, "albums": 0}
    shares = [report["splits"][s]["share"] for s in ("train", "validation", "test")]
    np.testing.assert_allclose(shares, [0.65, 0.10, 0.25], atol=0.02)
    # stratified: every context's positive ratio is close across splits
    for c in [f"c{i}" for i in range(8)]:
        ratios = [report["splits"][s]["positive_ratio"][c] for s in ("train", "validation", "test")]
        assert max(ratios) - min(ratios) < 0.05, (c, ratios)


def test_deterministic_under_seed():
    y, artists, albums = _world()
    g = group_ids(artists, albums)
    a = iterative_stratification(y, g, [0.65, 0.1, 0.25], seed=3)
    assert np.array_equal(a, iterative_stratification(y, g, [0.65, 0.1, 0.25], seed=3))


@pytest.mark.realdata
def test_real_dataset_split_is_artist_disjoint():
    hot = pd.read_csv(shared_file("deezer_context", "balanced_ground_truth_hot_vector.csv"))
    folds = pd.read_csv(shared_file("deezer_context", "ground_truth_folds.csv"), usecols=["song_id", "artist_id"])
    d = hot.merge(folds, on="song_id", how="left")
    y = d.iloc[:, 1:16].to_numpy()
    artists = d["artist_id"].astype("Int64").astype(str).where(d["artist_id"].notna(), None).to_numpy()
    split = iterative_stratification(y, group_ids(artists), [0.65, 0.10, 0.25], seed=0)
    report = split_report(y, split, list(hot.columns[1:]), artists, None)
    assert report["overlap"]["artists"] == 0
    shares = [report["splits"][s]["share"] for s in ("train", "validation", "test")]
    np.testing.assert_allclose(shares, [0.65, 0.10, 0.25], atol=0.01)
