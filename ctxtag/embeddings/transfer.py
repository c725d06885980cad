"""Transfer (Chen et al. §3.3): audio embeddings as features for a downstream classifier.

As the paper: features -> PCA to 128 dimensions -> SVM with an RBF kernel (bandwidth 1/128, C 1).
Here the downstream task is the platform's own, the 15 listening contexts (multi-label: one SVM
per context), trained on the tagger's train tracks and scored on its test tracks, comparing the
CNN tagger's own 256-d embedding, the 40-d audio embedding, and both concatenated (the paper's
"with AE"). PCA keeps min(128, feature size, train tracks) components, whitened so the fixed
kernel bandwidth sees unit-scale inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def evaluate(features: Mapping[str, np.ndarray], y: np.ndarray, train: np.ndarray, test: np.ndarray,
             contexts: Sequence[str], pca_dim: int = 128, seed: int = 0) -> dict[str, dict]:
    """Per feature set: macro ROC-AUC and average precision over the contexts on the test tracks."""
    from sklearn.decomposition import PCA
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    out = {}
    for name, x in features.items():
        n_comp = int(min(pca_dim, x.shape[1], train.sum()))
        per_context = {}
        for j, c in enumerate(contexts):
            yt, ye = y[train, j], y[test, j]
            if not (0 < yt.sum() < len(yt) and 0 < ye.sum() < len(ye)):
                continue
            model = make_pipeline(StandardScaler(), PCA(n_comp, whiten=True, random_state=seed),
                                  SVC(kernel="rbf", gamma=1.0 / pca_dim, C=1.0))
            model.fit(x[train], yt)
            s = model.decision_function(x[test])
            per_context[c] = {"roc_auc": float(roc_auc_score(ye, s)), "ap": float(average_precision_score(ye, s))}
        out[name] = {"dims": int(x.shape[1]), "pca": n_comp, "per_context": per_context,
                     "macro_roc_auc": float(np.mean([v["roc_auc"] for v in per_context.values()])),
                     "macro_ap": float(np.mean([v["ap"] for v in per_context.values()]))}
    return out


def table(results: Mapping[str, dict], labels: Mapping[str, str]) -> str:
    lines = ["| Features | dims | PCA | macro ROC-AUC | macro AP |", "|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {labels.get(name, name)} | {r['dims']} | {r['pca']} | {r['macro_roc_auc']:.3f} | {r['macro_ap']:.3f} |")
    return "\n".join(lines)
