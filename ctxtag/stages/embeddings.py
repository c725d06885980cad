"""`ctxtag embeddings`: Chen et al. end to end on the listening logs' liked / disliked tracks.

1. Liked and disliked pairs of eligible users (>= 10 of each); the tagger's artist-disjoint test
   tracks are the new releases (no listening data is used for them anywhere).
2. Per protocol (``per_user``: the sub-dataset's per-user 60/20/20; ``by_user``: the big dataset's
   disjoint users): the user branch is trained on the visible plays — none of a held-out pair's
   plays, none of a new track's — and gives every user's UE.
3. Table 1: each model x context duration of params on ``per_user``; the paper's chosen model
   (params best_model, best_duration) again on ``by_user``. AUC and precision on the test pairs
   and on the new tracks' pairs; hit rate @K of new tracks retrieved by cosine similarity.
4. The chosen model embeds every catalogue track (AE) and the serving user branch every user (UE,
   from all their plays) -> data/embeddings/*.parquet, which `ctxtag publish-features` pushes to Feast.
5. Transfer: AE vs the CNN tagger's embedding as features of a context SVM.
Reports: reports/embeddings.md (the tables), embeddings.json (DVC metrics), plots; MLflow runs.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ctxtag.common.io import read_matrix, write_json
from ctxtag.common.plots import bar_chart, line_chart, roc_pr_curves
from ctxtag.common.progress import progress
from ctxtag.config import Params
from ctxtag.embeddings import transfer
from ctxtag.embeddings.data import Histories, Ragged, Vocab, demographics, epoch_seconds
from ctxtag.embeddings.evaluation import (
    LABELS,
    hit_rate,
    hit_rate_table,
    liked_vs_disliked,
    table1,
    youden_threshold,
)
from ctxtag.embeddings.feedback import eligible, interactions, listening_history
from ctxtag.embeddings.model import SiameseRecommender, UserBranch
from ctxtag.embeddings.splits import by_user, per_user
from ctxtag.embeddings.train import (
    Examples,
    Pairs,
    fit_audio,
    fit_user_branch,
    pick_device,
    scores,
    track_embeddings,
    user_embeddings,
)
from ctxtag.listening.lake import read_lake


@dataclass
class Protocol:
    name: str
    users: pd.Index
    vocab: Vocab
    user_branch: UserBranch
    user_history: list[dict]
    anchors: np.ndarray                      # UE per user (n_users, dim)
    pairs: dict[str, Pairs]                  # train / validation / test / cold


def _pair_key(frame: pd.DataFrame) -> pd.Series:
    return frame["user_id"].astype(str) + "\x1f" + frame["track_id"].astype(str)


def build_protocol(name: str, split_of: pd.Series, inter: pd.DataFrame, plays: pd.DataFrame, new_tracks: set[str],
                   users: pd.Index, demo: np.ndarray, catalogue: pd.DataFrame, mel_row: np.ndarray,
                   params: Params, device: torch.device) -> Protocol:
    """Train the user branch on what this protocol may see, and index its pairs."""
    cfg = params.embeddings
    held = inter[split_of != "train"]
    visible = plays[~plays["track_id"].isin(new_tracks) & ~_pair_key(plays).isin(set(_pair_key(held)))]
    train_mask = (split_of == "train").to_numpy()
    vocab = Vocab.build(pd.concat([visible["track_id"], inter.loc[train_mask, "track_id"]]).unique(), catalogue)
    hist = Histories(visible, users, vocab, cfg.history_len)
    u = users.get_indexer(inter["user_id"])
    t = vocab.track_index(inter["track_id"])
    until = epoch_seconds(inter["first_ts"])
    liked = inter["liked"].to_numpy().astype(np.int8)
    split = split_of.to_numpy()
    train_ex = Examples.build(hist, u[train_mask & (liked == 1)], t[train_mask & (liked == 1)],
                              until[train_mask & (liked == 1)])
    val_mask = (split == "validation") & (liked == 1)
    val_ex = Examples.build(hist, u[val_mask], t[val_mask], until[val_mask])
    neg = train_mask & (liked == 0) & (t > 0)
    disliked = Ragged(u[neg], t[neg], len(users))
    sizes = (len(vocab.tracks), len(vocab.albums), len(vocab.artists))
    model, history = fit_user_branch(train_ex, val_ex, disliked, sizes, demo, cfg, params.seed, device)
    anchors = user_embeddings(model, hist, demo, device)
    pairs = {s: Pairs(u[split == s], mel_row[split == s], liked[split == s])
             for s in ("train", "validation", "test", "cold")}
    return Protocol(name, users, vocab, model, history, anchors, pairs)


def evaluate_model(model: SiameseRecommender, proto: Protocol, mels: np.ndarray, frames: int, new_rows: np.ndarray,
                   ks, device: torch.device, n_segments: int, test_users: np.ndarray | None = None) -> dict:
    """Liked vs disliked on test and new-track pairs (threshold from validation), hit rate @K of
    the new tracks for users with a liked one (``test_users``: only those)."""
    p = proto.pairs
    rows = np.unique(np.concatenate([p["validation"].row, p["test"].row, p["cold"].row, new_rows]))
    ae = track_embeddings(model.cnn, mels, rows, frames, device, n_segments)
    at = np.full(mels.shape[0], -1)
    at[rows] = np.arange(len(rows))
    anchors = model.users(torch.arange(len(proto.users), device=device)).detach().cpu().numpy()
    out: dict = {}
    s = {k: scores(anchors, ae, p[k], at) for k in ("validation", "test", "cold")}
    thr = youden_threshold(p["validation"].liked, s["validation"])
    for k in ("test", "cold"):
        out[k] = liked_vs_disliked(p[k].liked, s[k], p[k].user, thr)
    cold = p["cold"].subset(p["cold"].liked == 1)
    liked = np.zeros((len(proto.users), len(new_rows)), dtype=bool)
    col = pd.Index(new_rows).get_indexer(cold.row)
    liked[cold.user[col >= 0], col[col >= 0]] = True
    if test_users is not None:
        liked[~np.isin(np.arange(len(proto.users)), test_users)] = False
    out["hit_rate"] = hit_rate(anchors, ae[at[new_rows]], liked, ks)
    out["_scores"] = {k: s[k] for k in ("test",)}
    return out


def _frames(duration: float, params: Params) -> int:
    return int(round(duration * params.embedding_audio.sample_rate / params.embedding_audio.hop_length))


def _save_model(model: SiameseRecommender, name: str, duration: float, history: list[dict], params: Params) -> Path:
    out = params.paths.embeddings / "audio"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}_{duration:g}s.pt"
    torch.save({"cnn": model.cnn.state_dict(), "model": name, "duration_s": duration,
                "frames": _frames(duration, params), "config": dataclasses.asdict(params.embeddings),
                "audio": dataclasses.asdict(params.embedding_audio), "history": history}, path)
    return path


def _log_mlflow(params: Params, runs: list[dict], artifacts: list[Path]) -> None:
    import mlflow

    from ctxtag.common.tracking import setup_mlflow

    cfg = params.embeddings
    setup_mlflow(cfg.experiment)
    base = {f"embeddings.{k}": v for k, v in dataclasses.asdict(cfg).items() if k not in ("models", "durations", "split")}
    for r in runs:
        with mlflow.start_run(run_name=f"{r['protocol']}-{r['model']}-{r['duration']:g}s"):
            mlflow.set_tags({"protocol": r["protocol"], "model": r["model"], "context_duration_s": r["duration"]})
            mlflow.log_params(base)
            metrics = {f"{k}.{m}": v for k in ("test", "cold") for m, v in r["result"][k].items()
                       if isinstance(v, float) and np.isfinite(v)}
            metrics.update({f"new_tracks.{m.replace('@', '_at_')}": v for m, v in r["result"]["hit_rate"].items()})
            mlflow.log_metrics(metrics)
            for row in r["history"]:
                mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch" and np.isfinite(v)}, step=row["epoch"])
            for path in artifacts:
                mlflow.log_artifact(str(path))


def run(params: Params) -> dict:
    p, cfg = params.paths, params.embeddings
    device = pick_device(cfg.device)
    events = read_lake(p.lake)
    catalogue = pd.read_csv(p.tracks, dtype=str)
    tagger_split = pd.read_csv(p.splits / "split.csv", dtype=str).set_index("track_id")["split"]
    new_tracks = set(tagger_split.index[tagger_split == "test"])
    index = pd.read_csv(p.embedding_features / "index.csv", dtype={"track_id": str})
    mels = np.load(p.embedding_features / "mels.npy")       # random crops read it all, every epoch
    row_of = pd.Series(index["row"].to_numpy(), index=index["track_id"])

    inter_all = interactions(events)
    inter = eligible(inter_all, cfg.min_liked, cfg.min_disliked)
    no_audio = ~inter["track_id"].isin(row_of.index)
    inter = inter[~no_audio].reset_index(drop=True)
    if inter.empty:
        raise ValueError(f"{p.lake}: no user has {cfg.min_liked} liked and {cfg.min_disliked} disliked tracks "
                         "with audio; the listening logs need a feedback column (like / dislike / skip)")
    mel_row = row_of.reindex(inter["track_id"]).to_numpy()
    users = pd.Index(sorted(inter["user_id"].unique()))
    demo = demographics(events, users, params.logs.genders)
    plays = listening_history(events)
    new_rows = np.sort(row_of.reindex(sorted(new_tracks)).dropna().astype(int).to_numpy())

    protocols = {"per_user": per_user(inter, cfg.split, params.seed, new_tracks),
                 "by_user": by_user(inter, cfg.split, params.seed, new_tracks)}
    runs: list[dict] = []
    results: dict = {"per_user": {}, "by_user": {}}
    trained: dict = {}
    built = {name: build_protocol(name, split, inter, plays, new_tracks, users, demo, catalogue, mel_row, params,
                                  device) for name, split in progress(protocols.items(), total=2,
                                                                      description="user branches")}
    jobs = [("per_user", m, d) for d in cfg.durations for m in cfg.models] + \
           [("by_user", cfg.best_model, cfg.best_duration)]
    for proto_name, model_name, duration in progress(jobs, total=len(jobs), description="audio branches"):
        proto, frames = built[proto_name], _frames(duration, params)

        start, tag = time.time(), f"{proto_name} {model_name} {duration:g}s"

        def echo(row, start=start, tag=tag):
            print(f"[{tag}] epoch {row['epoch']:3d}  train {row['train_loss']:.4f}  val AUC {row['val_auc']:.4f}"
                  f"  ({time.time() - start:.0f} s)", flush=True)

        model, history = fit_audio(model_name, frames, mels, proto.pairs["train"], proto.pairs["validation"],
                                   len(users), proto.anchors, cfg, params.seed, device, echo)
        test_users = None
        if proto_name == "by_user":
            test_users = np.unique(proto.pairs["test"].user)
        result = evaluate_model(model, proto, mels, frames, new_rows, cfg.hit_k, device, cfg.eval_segments,
                                test_users)
        results[proto_name].setdefault(duration, {})[model_name] = result
        runs.append({"protocol": proto_name, "model": model_name, "duration": duration, "result": result,
                     "history": history})
        _save_model(model, model_name, duration, history, params)
        trained[(proto_name, model_name, duration)] = model

    # the chosen model and the serving user branch -> the tables Feast serves
    best = trained[("per_user", cfg.best_model, cfg.best_duration)]
    serving = built["per_user"]
    track_ids = index["track_id"].to_numpy()
    ae_all = track_embeddings(best.cnn, mels, np.arange(len(track_ids)), _frames(cfg.best_duration, params), device,
                              cfg.eval_segments)
    cutoff = events["event_timestamp"].max()
    all_users = pd.Index(sorted(events["user_id"].unique()))
    ue_all = user_embeddings(serving.user_branch, Histories(plays, all_users, serving.vocab, cfg.history_len),
                             demographics(events, all_users, params.logs.genders), device)
    out = p.embeddings
    out.mkdir(parents=True, exist_ok=True)
    tag = f"{cfg.best_model}_{cfg.best_duration:g}s"
    pd.DataFrame({"track_id": track_ids, "listening_embedding": list(ae_all.astype(np.float32)),
                  "cold_start": ~pd.Index(track_ids).isin(serving.vocab.tracks), "embedding_model": tag,
                  "event_timestamp": cutoff}).to_parquet(out / "track_embeddings.parquet", index=False)
    pd.DataFrame({"user_id": all_users, "listening_embedding": list(ue_all.astype(np.float32)),
                  "event_timestamp": cutoff}).to_parquet(out / "user_embeddings.parquet", index=False)
    torch.save({"state_dict": serving.user_branch.state_dict(), "tracks": list(serving.vocab.tracks),
                "albums": list(serving.vocab.albums), "artists": list(serving.vocab.artists),
                "config": dataclasses.asdict(cfg), "history": serving.user_history}, out / "user_branch.pt")

    # transfer: the AE vs the tagger's own features, as inputs of a context SVM
    ids, y = read_matrix(p.labelled / "labels.csv", params.contexts)
    tf = pd.read_parquet(p.track_features / "track_features.parquet", columns=["track_id", "audio_embedding"])
    tf = tf.set_index(tf["track_id"].astype(str))
    keep = pd.Index(ids).isin(tf.index) & pd.Index(ids).isin(row_of.index) & pd.Index(ids).isin(tagger_split.index)
    ids, y = np.asarray(ids)[keep], y[keep]
    cnn_feat = np.stack(tf.loc[ids, "audio_embedding"].to_numpy()).astype(np.float32)
    ae_feat = ae_all[row_of.reindex(ids).to_numpy()]
    where = tagger_split.reindex(ids).to_numpy()
    transfer_res = transfer.evaluate({"cnn": cnn_feat, "ae": ae_feat, "cnn+ae": np.hstack([cnn_feat, ae_feat])},
                                     y, where == "train", where == "test", params.contexts, cfg.transfer_pca,
                                     params.seed)

    # reports
    best_label = f"{LABELS[cfg.best_model]}-{cfg.best_duration:g}s"
    hr_rows = {f"{LABELS[m]}-{d:g}s": results["per_user"][d][m]["hit_rate"] for d in cfg.durations for m in cfg.models}
    hr_rows[f"{best_label}, unseen users (by_user test)"] = results["by_user"][cfg.best_duration][cfg.best_model]["hit_rate"]
    bu = results["by_user"][cfg.best_duration][cfg.best_model]
    sizes = {name: {s: int(len(pr.pairs[s].user)) for s in pr.pairs} for name, pr in built.items()}
    md = [
        "# Audio embeddings learnt from listening data (Chen et al.)", "",
        f"{len(users)} users with >= {cfg.min_liked} liked and >= {cfg.min_disliked} disliked tracks, "
        f"{inter['track_id'].nunique()} tracks, {len(inter)} liked/disliked pairs "
        f"({int(inter['liked'].sum())} liked); {len(new_rows)} new tracks (no listening data used).", "",
        "## Table 1: liked vs disliked, per-user 60/20/20 split", "",
        table1(results["per_user"], list(LABELS)), "",
        f"## {best_label} with users not shared across splits (the paper's big-dataset protocol)", "",
        f"Precision {bu['test']['precision']:.3f}, AUC {bu['test']['auc']:.3f} "
        f"(per-user AUC {bu['test']['user_auc']:.3f}) on {bu['test']['pairs']} pairs of unseen users.", "",
        "## New tracks retrieved for users by cosine similarity of UE and AE", "",
        hit_rate_table(hr_rows, cfg.hit_k), "",
        "## Transfer: features of a context SVM (PCA 128, RBF, tagger's test tracks)", "",
        transfer.table(transfer_res, {"cnn": "CNN tagger embedding", "ae": f"AE ({best_label})",
                                      "cnn+ae": "CNN tagger embedding + AE"}), "",
    ]
    (p.reports / "embeddings.md").write_text("\n".join(md))
    plots_dir = p.reports / "plots"
    d_labels = [f"{d:g} s" for d in cfg.durations]
    plots = [
        bar_chart({LABELS[m]: [results["per_user"][d][m]["test"]["auc"] for d in cfg.durations] for m in cfg.models},
                  d_labels, plots_dir / "embeddings_auc.png", "liked vs disliked ROC-AUC (test pairs)", "AUC"),
        line_chart({**{k: [r[f"hit_rate@{x}"] for x in cfg.hit_k] for k, r in hr_rows.items() if "unseen" not in k},
                    "random ranking": [results["per_user"][cfg.best_duration][cfg.best_model]["hit_rate"]
                                       [f"random_hit_rate@{x}"] for x in cfg.hit_k]},
                   list(cfg.hit_k), plots_dir / "embeddings_hit_rate.png", "new tracks: hit rate @K", "K",
                   "hit rate"),
    ]
    test_pairs = built["per_user"].pairs["test"]
    cols = [f"{LABELS[m]}-{cfg.best_duration:g}s" for m in cfg.models]
    plots.append(roc_pr_curves(np.repeat(test_pairs.liked[:, None], len(cols), axis=1),
                               np.stack([results["per_user"][cfg.best_duration][m]["_scores"]["test"]
                                         for m in cfg.models], axis=1), cols,
                               plots_dir / "embeddings_roc_pr.png", "liked vs disliked, test pairs"))
    for proto in results.values():
        for models in proto.values():
            for r in models.values():
                r.pop("_scores", None)
    summary = {
        "users": len(users), "pairs": len(inter), "new_tracks": len(new_rows), "sizes": sizes,
        "table1": {f"{d:g}s": {m: {k: r[k] for k in ("test", "cold")} for m, r in v.items()}
                   for d, v in results["per_user"].items()},
        "by_user": {k: bu[k] for k in ("test", "cold")},
        "hit_rate": hr_rows,
        "transfer": {k: {m: v[m] for m in ("dims", "pca", "macro_roc_auc", "macro_ap")} for k, v in transfer_res.items()},
        "user_branch": {name: {"epochs": len(pr.user_history), "val_loss": pr.user_history[-1]["val_loss"]}
                        for name, pr in built.items()},
    }
    write_json(summary, p.reports / "embeddings.json")
    (out / "transfer.json").write_text(json.dumps(transfer_res, indent=2))
    if cfg.log_mlflow:
        _log_mlflow(params, runs, [p.reports / "embeddings.md", *plots])
    return summary
