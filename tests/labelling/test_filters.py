import pandas as pd

from ctxtag.config import LabelConfig
from ctxtag.labelling.filters import apply_filters


def _playlist(pid: str, artists: list[str], albums: list[str] | None = None) -> pd.DataFrame:
    albums = albums or [f"{pid}-al{i}" for i in range(len(artists))]
    return pd.DataFrame({"playlist_id": pid, "track_id": [f"{pid}-t{i}" for i in range(len(artists))],
                         "artist_id": artists, "album_id": albums})


def test_track_count_limit_is_strictly_more_than_100():
    cfg = LabelConfig()
    entries = pd.concat([
        _playlist("ok", [f"a{i}" for i in range(100)]),
        _playlist("long", [f"a{i}" for i in range(101)]),
    ])
    result = apply_filters(entries, cfg)
    assert list(result.kept) == ["ok"]
    assert result.stats["dropped_too_many_tracks"] == 1


def test_artist_share_of_exactly_25_percent_is_kept_above_is_dropped():
    cfg = LabelConfig()
    quarter = ["x"] * 2 + [f"a{i}" for i in range(6)]            # 2/8 = 25 %
    over = ["x"] * 3 + [f"a{i}" for i in range(6)]               # 3/9 = 33 %
    entries = pd.concat([_playlist("quarter", quarter), _playlist("over", over)])
    result = apply_filters(entries, cfg)
    assert list(result.kept) == ["quarter"]
    assert result.failed.loc["over", "artist_dominated"]
    assert not result.failed.loc["over", "album_dominated"]


def test_album_dominated_playlist_is_dropped_and_counted_once():
    cfg = LabelConfig()
    entries = _playlist("alb", [f"a{i}" for i in range(8)], ["same"] * 3 + [f"b{i}" for i in range(5)])
    result = apply_filters(entries, cfg)
    assert len(result.kept) == 0
    assert result.stats == {"dropped_too_many_tracks": 0, "dropped_artist_dominated": 0,
                            "dropped_album_dominated": 1, "dropped_any_filter": 1, "kept_after_filters": 0}


def test_thresholds_come_from_config():
    entries = _playlist("p", ["x"] * 2 + ["y", "z"])              # 50 % one artist
    assert len(apply_filters(entries, LabelConfig(max_artist_share=0.5)).kept) == 1
    assert len(apply_filters(entries, LabelConfig(max_artist_share=0.49)).kept) == 0
