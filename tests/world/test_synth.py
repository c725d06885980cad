import dataclasses

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ctxtag.config import SynthConfig
from ctxtag.world.synth import generate
from tests.conftest import CONTEXTS

SMALL = dataclasses.replace(SynthConfig(), n_artists=40, n_users=30, n_context_playlists=300,
                            n_noise_playlists=40, n_filtered_playlists=10, n_events=6000,
                            clip_seconds=4.0, days=28)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    return generate(SMALL, CONTEXTS, seed=5, out=out, workers=1), out


def test_same_seed_same_world(world, tmp_path):
    w, out = world
    again = generate(SMALL, CONTEXTS, seed=5, out=tmp_path, audio=False)
    assert again.playlists == w.playlists
    pd.testing.assert_frame_equal(again.true_labels, w.true_labels)
    assert (out / "playlists.jsonl").read_bytes() == (tmp_path / "playlists.jsonl").read_bytes()


def test_truth_is_kept_apart(world):
    _, out = world
    assert (out / "truth/true_labels.csv").exists()
    logs = pd.concat(pd.read_csv(p) for p in sorted((out / "listening_logs").glob("*.csv")))
    assert "true_context" not in logs.columns
    assert set(logs.columns) >= {"user_id", "track_id", "timestamp", "device", "network", "context"}
    assert logs["context"].notna().mean() < 0.5           # the user names a context only sometimes
    assert logs["timestamp"].str.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$").all()


def test_audio_follows_the_true_contexts(world):
    w, out = world
    traits = pd.read_csv(out / "truth/audio_traits.csv", dtype={"track_id": str}).set_index("track_id")
    truth = w.true_labels.set_index("track_id")
    energetic = truth.index[(truth["workout"] == 1) & (truth["sleep"] == 0)]
    calm = truth.index[(truth["sleep"] == 1) & (truth["workout"] == 0)]
    assert traits.loc[energetic, "tempo_bpm"].mean() > traits.loc[calm, "tempo_bpm"].mean() + 30
    assert traits.loc[energetic, "loudness_db"].mean() > traits.loc[calm, "loudness_db"].mean() + 6
    sad = truth.index[truth["sad"] == 1]
    happy = truth.index[truth["happy"] == 1]
    assert traits.loc[happy, "major"].mean() > traits.loc[sad, "major"].mean() + 0.4
    audio, sr = sf.read(out / w.tracks["audio_path"].iloc[0])
    assert sr == SMALL.sample_rate and len(audio) == int(SMALL.clip_seconds * sr)
    assert 0.005 < np.sqrt(np.mean(audio**2)) < 0.5


def test_device_and_time_carry_context(world):
    w, _ = world
    ev = w.events
    car = ev[ev["true_context"] == "car"]
    work = ev[ev["true_context"] == "work"]
    assert (car["device"] == "car").mean() > 0.6
    assert (work["device"] == "computer").mean() > 0.6
    assert (ev["device"] == "car").mean() < 0.3
    party_weekend = ev.loc[ev["true_context"] == "party", "_local"].dt.weekday.isin([4, 5]).mean()
    work_weekend = ev.loc[ev["true_context"] == "work", "_local"].dt.weekday.isin([5, 6]).mean()
    assert party_weekend > 0.4 and work_weekend < 0.15


def test_playlists_name_contexts_and_include_noise_and_filter_bait(world):
    w, _ = world
    titles = [p["title"] for p in w.playlists]
    assert len(titles) == SMALL.n_context_playlists + SMALL.n_noise_playlists + SMALL.n_filtered_playlists
    assert sum(len(p["tracks"]) > 100 for p in w.playlists) >= SMALL.n_filtered_playlists // 2 - 1
    assert any(t == "homework" for t in titles) or any("chillout" in t for t in titles)


def test_feedback_follows_each_users_taste_in_the_audio_plane(world):
    """Liked tracks lie nearer the user's ideal (energy, valence) than skipped ones, and the
    feedback draws left the rest of the world as it was (its own random stream)."""
    w, out = world
    ev = w.events
    assert set(ev["feedback"].dropna()) == {"like", "skip", "dislike"}
    taste = pd.read_csv(out / "truth/user_taste.csv").set_index("user_id")
    latent = w.tracks.set_index("track_id")[["energy", "valence"]]
    d = np.hypot(latent.loc[ev["track_id"], "energy"].to_numpy() - taste.loc[ev["user_id"], "ideal_energy"].to_numpy(),
                 latent.loc[ev["track_id"], "valence"].to_numpy() - taste.loc[ev["user_id"], "ideal_valence"].to_numpy())
    assert d[(ev["feedback"] == "like").to_numpy()].mean() < 0.7 * d[(ev["feedback"] == "skip").to_numpy()].mean()
    logs = pd.concat(pd.read_csv(p) for p in sorted((out / "listening_logs").glob("*.csv")))
    assert "feedback" in logs.columns
