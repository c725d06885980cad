import numpy as np
import pandas as pd

from ctxtag.config import LabelConfig
from ctxtag.labelling.filters import filter_flags


def _playlist(pid: str, artists: list[str], albums: list[str] | None = None) -> pd.DataFrame:
    albums = albums or [f"{pid}-al{i}" for i in range(len(artists))]
    return pd.DataFrame({"playlist_id": pid, "track_id": [f"{pid}-t{i}" for i in range(len(artists))],
                         "artist_id": artists, "album_id": albums})


def _filter(entries: pd.DataFrame, cfg: LabelConfig) -> tuple[list[str], pd.DataFrame, dict[str, int]]:
    """The per-playlist inputs of the filters (track count, largest same-artist and same-album
    counts), counted here independently with pandas; -> kept ids, failed flags, stats."""
    n = entries.groupby("playlist_id", sort=False).size()
    most = {c: entries.groupby(["playlist_id", c]).size().groupby(level=0).max().reindex(n.index).to_numpy()
            for c in ("artist_id", "album_id")}
    failed, stats = filter_flags(n.to_numpy(), most["artist_id"], most["album_id"], cfg)
    failed = pd.DataFrame(failed, index=n.index)
    return list(failed.index[~failed.any(axis=1)]), failed, stats


def test_track_count_limit_is_strictly_more_than_100():
    entries = pd.concat([
        _playlist("ok", [f"a{i}" for i in range(100)]),
        _playlist("long", [f"a{i}" for i in range(101)]),
    ])
    kept, _, stats = _filter(entries, LabelConfig())
    assert kept == ["ok"]
    assert stats["dropped_too_many_tracks"] == 1


def test_artist_share_of_exactly_25_percent_is_kept_above_is_dropped():
    quarter = ["x"] * 2 + [f"a{i}" for i in range(6)]            # 2/8 = 25 %
    over = ["x"] * 3 + [f"a{i}" for i in range(6)]               # 3/9 = 33 %
    kept, failed, _ = _filter(pd.concat([_playlist("quarter", quarter), _playlist("over", over)]), LabelConfig())
    assert kept == ["quarter"]
    assert failed.loc["over", "artist_dominated"]
    assert not failed.loc["over", "album_dominated"]


def test_album_dominated_playlist_is_dropped_and_counted_once():
    entries = _playlist("alb", [f"a{i}" for i in range(8)], ["same"] * 3 + [f"b{i}" for i in range(5)])
    kept, _, stats = _filter(entries, LabelConfig())
    assert kept == []
    assert stats == {"dropped_too_many_tracks": 0, "dropped_artist_dominated": 0,
                     "dropped_album_dominated": 1, "dropped_any_filter": 1, "kept_after_filters": 0}


def test_a_playlist_failing_two_filters_is_dropped_once():
    entries = _playlist("both", ["x"] * 120, ["y"] * 120)
    _, failed, stats = _filter(entries, LabelConfig())
    assert failed.loc["both"].all()
    assert stats["dropped_any_filter"] == 1 and stats["kept_after_filters"] == 0


def test_thresholds_come_from_config():
    entries = _playlist("p", ["x"] * 2 + ["y", "z"])              # 50 % one artist
    assert len(_filter(entries, LabelConfig(max_artist_share=0.5))[0]) == 1
    assert len(_filter(entries, LabelConfig(max_artist_share=0.49))[0]) == 0
    assert filter_flags(np.array([3]), np.array([1]), np.array([1]), LabelConfig(max_tracks=2))[0][
        "too_many_tracks"].tolist() == [True]
