import pandas as pd

from ctxtag.embeddings.feedback import eligible, interactions, listening_history


def _events(rows):
    frame = pd.DataFrame(rows, columns=["user_id", "track_id", "event_timestamp", "feedback"])
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame


def test_explicit_feedback_beats_skips_and_the_latest_explicit_wins():
    ev = _events([
        ("u1", "a", "2026-01-01T10:00Z", "skip"), ("u1", "a", "2026-01-02T10:00Z", "like"),      # like > skip
        ("u1", "b", "2026-01-01T10:00Z", "like"), ("u1", "b", "2026-01-03T10:00Z", "dislike"),   # latest explicit
        ("u1", "c", "2026-01-01T10:00Z", "skip"), ("u1", "c", "2026-01-04T10:00Z", None),        # skips only
        ("u1", "d", "2026-01-01T10:00Z", None),                                                   # no feedback
        ("u2", "a", "2026-01-05T10:00Z", "dislike"), ("u2", "a", "2026-01-06T10:00Z", "like"),
    ])
    got = interactions(ev).set_index(["user_id", "track_id"])
    assert got["liked"].to_dict() == {("u1", "a"): 1, ("u1", "b"): 0, ("u1", "c"): 0, ("u2", "a"): 1}
    assert got.loc[("u1", "a"), "first_ts"] == pd.Timestamp("2026-01-01T10:00Z")   # first feedback


def test_logs_without_feedback_give_no_pairs_and_skips_leave_the_history():
    ev = _events([("u1", "a", "2026-01-01T10:00Z", None)]).drop(columns="feedback")
    assert interactions(ev).empty
    ev = _events([("u1", "a", "2026-01-01T10:00Z", "skip"), ("u1", "b", "2026-01-01T11:00Z", None),
                  ("u1", "c", "2026-01-01T12:00Z", "like"), ("u1", "d", "2026-01-01T13:00Z", "dislike")])
    assert listening_history(ev)["track_id"].tolist() == ["b", "c"]


def test_eligible_users_need_enough_liked_and_disliked_tracks():
    inter = pd.DataFrame({"user_id": ["u1"] * 5 + ["u2"] * 5, "track_id": list("abcdeabcde"),
                          "liked": [1, 1, 0, 0, 0, 1, 1, 1, 1, 0], "first_ts": pd.Timestamp("2026-01-01", tz="UTC")})
    assert set(eligible(inter, 2, 2)["user_id"]) == {"u1"}          # u2 has one disliked track
    assert set(eligible(inter, 1, 1)["user_id"]) == {"u1", "u2"}
