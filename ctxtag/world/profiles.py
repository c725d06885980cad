"""How the generated world behaves: each context's region of the (energy, valence) plane, its
popularity and listening situation, playlist title templates; a track's true contexts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# (energy, valence) centre and strength of each context's link to the audio; strength ~0:
# the context is situational (the paper finds car, work, night hardest to predict from audio).
CONTEXT_PROFILES: dict[str, tuple[float, float, float]] = {
    "car": (0.6, 0.6, 0.3), "chill": (0.35, 0.55, 1.5), "club": (0.88, 0.55, 4.0),
    "dance": (0.8, 0.72, 4.0), "gym": (0.92, 0.45, 3.5), "happy": (0.62, 0.92, 3.0),
    "night": (0.55, 0.3, 1.0), "party": (0.8, 0.8, 3.5), "relax": (0.2, 0.55, 3.5),
    "running": (0.85, 0.62, 3.0), "sad": (0.22, 0.08, 4.0), "sleep": (0.08, 0.4, 4.0),
    "summer": (0.68, 0.82, 2.5), "work": (0.45, 0.5, 0.3), "workout": (0.9, 0.55, 3.5),
}
# share of all context playlists that name each context (the catalogue is imbalanced)
CONTEXT_POPULARITY = {
    "dance": 3.0, "party": 2.2, "chill": 2.2, "summer": 1.4, "gym": 1.2, "running": 1.0,
    "workout": 1.0, "sad": 1.0, "car": 0.9, "relax": 0.8, "work": 0.7, "night": 0.6,
    "happy": 0.6, "sleep": 0.5, "club": 0.4,
}
# per context: device weights, network weights, hour-of-day peaks, weekend multiplier, location
CONTEXT_SITUATION: dict[str, tuple[Sequence[float], Sequence[float], Sequence[int], float, str]] = {
    "car":     ((1, 0, 0, 0, 12, 0), (1, 6, 1), (8, 18), 1.0, "car"),
    "chill":   ((3, 2, 1, 2, 0, 1), (5, 2, 1), (16, 21), 1.2, "home"),
    "club":    ((4, 0, 0, 2, 0, 0), (1, 4, 1), (23, 1), 3.0, "outdoor"),
    "dance":   ((3, 1, 0, 4, 0, 1), (4, 2, 1), (20, 23), 2.0, "home"),
    "gym":     ((10, 0, 1, 1, 0, 0), (2, 6, 2), (7, 18), 0.8, "gym"),
    "happy":   ((3, 2, 1, 2, 1, 1), (4, 3, 1), (10, 17), 1.3, "home"),
    "night":   ((4, 2, 1, 2, 1, 1), (4, 2, 1), (23, 2), 1.5, "home"),
    "party":   ((2, 1, 0, 8, 0, 1), (5, 2, 1), (22, 0), 3.0, "home"),
    "relax":   ((2, 2, 2, 3, 0, 2), (6, 1, 1), (19, 21), 1.3, "home"),
    "running": ((12, 0, 0, 0, 0, 0), (1, 6, 3), (7, 19), 1.2, "outdoor"),
    "sad":     ((5, 2, 2, 1, 0, 0), (5, 3, 1), (22, 2), 1.0, "home"),
    "sleep":   ((6, 0, 2, 4, 0, 0), (7, 1, 2), (23, 0), 1.0, "home"),
    "summer":  ((5, 1, 1, 3, 2, 0), (2, 5, 1), (14, 17), 1.5, "outdoor"),
    "work":    ((1, 12, 1, 0, 0, 0), (8, 1, 1), (10, 15), 0.1, "office"),
    "workout": ((10, 0, 1, 2, 0, 0), (3, 5, 2), (7, 18), 0.8, "gym"),
}
# how playlist creators spell a context in a title; {k} is the keyword in its form
TITLE_TEMPLATES = (
    "{k}", "{K}", "{Kc}", "#{Kc}!!", "{k} mix", "{Kc} Vibes", "my {k} playlist", "{Kc} Hits 2026",
    "{k} songs", "música para {k}", "{K} TIME", "best of {k}", "{Kc} 🎧", "{k}, {k2}",
    "{Kc} & {K2c}", "{k} ({year})", "pour le {k}", "{Kc}!!!", "~{k}~", "{k}_{k2}",
)
NOISE_TITLES = (
    "homework", "my favs", "rock classics", "indie finds", "throwback", "carpool karaoke",
    "chillout lounge", "partytime", "sadness", "clubbing 2019", "workouts", "Discover", "on repeat",
    "road trip", "summertime", "dancefloor", "workaholic", "nightcore", "Happiness", "sleepover",
    "gymnopédies", "rélaxation", "cardio", "coding", "Sunday morning", "love songs",
)
TIMEZONES = ("Europe/Paris", "Europe/Berlin", "America/Sao_Paulo", "Europe/London", "America/New_York")




def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def first_above(cum_t: np.ndarray, rows: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``(cum_t.T[rows] > r[:, None]).argmax(1)`` without the (n, k) matrix: each row of the
    cumulative table rises, so the first column above r is the number of columns at or below it
    (argmax of an all-False row is 0)."""
    count = np.zeros(len(rows), dtype=np.int64)
    for col in cum_t:                                  # k columns, each a vectorised pass
        count += col[rows] <= r
    count[count == len(cum_t)] = 0
    return count


def true_context_probability(energy: np.ndarray, valence: np.ndarray, contexts: Sequence[str]) -> np.ndarray:
    """P(context fits the track | latent traits), (n_tracks, m)."""
    prof = np.array([CONTEXT_PROFILES[c] for c in contexts])
    d2 = (energy[:, None] - prof[None, :, 0]) ** 2 + (valence[:, None] - prof[None, :, 1]) ** 2
    affinity = np.exp(-d2 / (2 * 0.2**2))
    strength = prof[None, :, 2]
    # weak contexts fit ~30 % of tracks whatever they sound like
    return sigmoid(-0.85 + strength * (2 * affinity - 0.7))
