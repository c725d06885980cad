from math import comb

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ctxtag.embeddings.evaluation import hit_rate, liked_vs_disliked, per_user_auc, youden_threshold


def test_per_user_auc_is_the_mean_of_each_users_auc():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 6, 400)
    liked = rng.integers(0, 2, 400).astype(np.int8)
    score = rng.random(400) + 0.4 * liked
    users[users == 5] = 5
    liked[users == 5] = 1                                    # a user with one kind only: skipped
    expect = np.mean([roc_auc_score(liked[users == u], score[users == u]) for u in range(5)])
    assert per_user_auc(liked, score, users) == pytest.approx(expect)


def test_precision_at_the_validation_threshold():
    liked = np.array([1, 1, 0, 0, 1, 0])
    score = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3])
    thr = youden_threshold(liked, score)
    r = liked_vs_disliked(liked, score, np.zeros(6, dtype=int), thr)
    pred = score >= thr
    assert r["precision"] == pytest.approx(liked[pred].mean())
    assert r["auc"] == pytest.approx(roc_auc_score(liked, score))


def test_hit_rate_matches_brute_force_and_the_random_baseline_is_combinatorial():
    rng = np.random.default_rng(1)
    ue, ae = rng.normal(size=(20, 8)), rng.normal(size=(30, 8))
    liked = rng.random((20, 30)) < 0.1
    liked[0] = False                                          # no liked new track: not counted
    got = hit_rate(ue, ae, liked, [5, 10])
    sims = (ue / np.linalg.norm(ue, axis=1, keepdims=True)) @ (ae / np.linalg.norm(ae, axis=1, keepdims=True)).T
    users = [u for u in range(20) if liked[u].any()]
    for k in (5, 10):
        hits = [liked[u][np.argsort(-sims[u])[:k]].any() for u in users]
        rand = [1 - comb(30 - liked[u].sum(), k) / comb(30, k) for u in users]
        assert got[f"hit_rate@{k}"] == pytest.approx(np.mean(hits))
        assert got[f"random_hit_rate@{k}"] == pytest.approx(np.mean(rand))
    assert got["users"] == len(users)


def test_a_perfect_ranking_hits_everyone():
    ue = np.eye(4)
    liked = np.eye(4, dtype=bool)
    assert hit_rate(ue, np.eye(4), liked, [1])["hit_rate@1"] == 1.0


def test_table1_intervals_over_users_and_the_paired_difference():
    from ctxtag.embeddings.evaluation import bootstrap_liked, liked_vs_disliked

    rng = np.random.default_rng(21)
    users = np.repeat([f"u{i}" for i in range(60)], 12)
    liked = (rng.random(len(users)) < 0.5).astype(int)
    good = liked * 0.6 + rng.random(len(users))
    noise = rng.random(len(users))
    boot = bootstrap_liked(liked, users, {"good": good, "noise": noise}, {"good": 0.8, "noise": 0.5},
                           reps=300, seed=0, pairs=[("good", "noise")])
    plain = liked_vs_disliked(liked, good, users, 0.8)
    for k in ("auc", "precision", "user_auc"):
        ci = boot["intervals"]["good"][k]
        assert ci["low"] <= plain[k] <= ci["high"], k
    d = boot["paired"]["good - noise"]["auc"]
    assert d["interval"]["low"] > 0 and d["p"] < 0.01


def test_chance_rows_floor_table_1():
    from ctxtag.embeddings.evaluation import CHANCE, chance_results, table1
    from ctxtag.embeddings.train import Pairs

    rng = np.random.default_rng(11)
    # tracks 0-19 seen in training, liked in proportion to their index; 20-29 new (cold)
    def draw(n, rows):
        row = rng.choice(rows, n)
        return Pairs(rng.integers(0, 40, n), row, (rng.random(n) < np.where(row < 20, row / 20, 0.5)).astype(np.uint8))

    seen = np.arange(20)
    pairs = {"train": draw(4000, seen), "validation": draw(800, seen), "test": draw(800, seen),
             "cold": draw(400, np.arange(20, 30))}
    got = chance_results(pairs, seed=0, reps=200)
    assert abs(got["random"]["test"]["auc"] - 0.5) < 0.06 and abs(got["random"]["cold"]["auc"] - 0.5) < 0.08
    assert got["popularity"]["test"]["auc"] > 0.65            # popular tracks are liked more here
    assert got["popularity"]["cold"]["auc"] == 0.5            # a new track has no popularity: all tie
    ci = got["random"]["test"]["intervals"]["auc"]
    assert ci["low"] < got["random"]["test"]["auc"] < ci["high"]
    text = table1({3.0: {}}, [], got)
    assert all(f"| {label} |" in text for label in CHANCE.values())
