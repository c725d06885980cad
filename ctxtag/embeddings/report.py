"""The tables of the embeddings experiment, for people (markdown) and for DVC (a summary)."""

from __future__ import annotations

from ctxtag.config import EmbeddingConfig
from ctxtag.embeddings import transfer
from ctxtag.embeddings.evaluation import LABELS, hit_rate_table, table1
from ctxtag.embeddings.experiment import Experiment


def best_label(cfg: EmbeddingConfig) -> str:
    return f"{LABELS[cfg.best_model]}-{cfg.best_duration:g}s"


def hit_rate_rows(exp: Experiment, cfg: EmbeddingConfig) -> dict[str, dict]:
    rows = {f"{LABELS[m]}-{d:g}s": exp.results["per_user"][d][m]["hit_rate"] for d in cfg.durations for m in cfg.models}
    rows[f"{best_label(cfg)}, unseen users (by_user test)"] = \
        exp.results["by_user"][cfg.best_duration][cfg.best_model]["hit_rate"]
    return rows


def markdown(exp: Experiment, transfer_res: dict, cfg: EmbeddingConfig, chance: dict | None = None) -> str:
    bu = exp.results["by_user"][cfg.best_duration][cfg.best_model]
    label, inter = best_label(cfg), exp.inter
    return "\n".join([
        "# Audio embeddings learnt from listening data (Chen et al.)", "",
        f"{len(exp.users)} users with >= {cfg.min_liked} liked and >= {cfg.min_disliked} disliked tracks, "
        f"{inter['track_id'].nunique()} tracks, {len(inter)} liked/disliked pairs "
        f"({int(inter['liked'].sum())} liked); {len(exp.new_rows)} new tracks (no listening data used).", "",
        "## Table 1: liked vs disliked, per-user 60/20/20 split", "",
        table1(exp.results["per_user"], list(LABELS), chance), "",
        f"## {label} with users not shared across splits (the paper's big-dataset protocol)", "",
        f"Precision {bu['test']['precision']:.3f}, AUC {bu['test']['auc']:.3f} "
        f"(per-user AUC {bu['test']['user_auc']:.3f}) on {bu['test']['pairs']} pairs of unseen users.", "",
        "## New tracks retrieved for users by cosine similarity of UE and AE", "",
        hit_rate_table(hit_rate_rows(exp, cfg), cfg.hit_k), "",
        "## Transfer: features of a context SVM (PCA 128, RBF, tagger's test tracks)", "",
        transfer.table(transfer_res, {"cnn": "CNN tagger embedding", "ae": f"AE ({label})",
                                      "cnn+ae": "CNN tagger embedding + AE"}), "",
    ])


def summary(exp: Experiment, transfer_res: dict, cfg: EmbeddingConfig, chance: dict | None = None) -> dict:
    """The DVC metrics of the stage (no per-pair scores)."""
    bu = exp.results["by_user"][cfg.best_duration][cfg.best_model]
    return {
        "users": len(exp.users), "pairs": len(exp.inter), "new_tracks": len(exp.new_rows),
        "sizes": {name: {s: int(len(pr.pairs[s].user)) for s in pr.pairs} for name, pr in exp.protocols.items()},
        "table1": {f"{d:g}s": {m: {k: r[k] for k in ("test", "cold")} for m, r in v.items()}
                   for d, v in exp.results["per_user"].items()},
        "by_user": {k: bu[k] for k in ("test", "cold")},
        "table1_chance": chance or {},
        "hit_rate": hit_rate_rows(exp, cfg),
        "transfer": {k: {m: v[m] for m in ("dims", "pca", "macro_roc_auc", "macro_ap")} for k, v in transfer_res.items()},
        "user_branch": {name: {"epochs": len(pr.user_history), "val_loss": pr.user_history[-1]["val_loss"]}
                        for name, pr in exp.protocols.items()},
    }
