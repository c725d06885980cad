"""`ctxtag evaluate`: Table 1/2-style metrics of every trained loss configuration, side by side.

Scored against the observed (playlist) labels, as the paper must, and — on the generated world —
against the complete true labels, which show how much each weighting recovers missing negatives.
"""

from __future__ import annotations

import json

import numpy as np

from ctxtag.common.io import read_matrix, write_json
from ctxtag.common.plots import bar_chart, roc_pr_curves
from ctxtag.config import Params
from ctxtag.tagger import metrics
from ctxtag.tagger.checkpoints import load_cnn
from ctxtag.tagger.dataset import load_splits
from ctxtag.tagger.train import pick_device, predict

COLUMNS = (("hamming_loss", "HL↓"), ("roc_auc", "AUC"), ("pr_auc", "PR-AUC"), ("recall", "Recall"),
           ("precision", "Precision"), ("f1", "F1"), ("tn_rate", "TN rate"))


def table(results: dict, key: str) -> str:
    head = "| loss configuration | " + " | ".join(label for _, label in COLUMNS) + " |"
    rows = [head, "|---" * (len(COLUMNS) + 1) + "|"]
    for name, res in results.items():
        macro = res[key]["macro"]
        cells = ["–" if macro[m] is None else f"{macro[m]:.2f}" for m, _ in COLUMNS]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def run(params: Params) -> dict:
    p, contexts = params.paths, params.contexts
    device = pick_device(params.train)
    truth_path = p.raw / "truth/true_labels.csv"
    truth = read_matrix(truth_path, contexts) if truth_path.exists() else None
    results: dict[str, dict] = {}
    for cfg in params.train.configs:
        ckpt = p.models / cfg / "best.pt"
        if not ckpt.exists():
            print(f"evaluate: no model for {cfg} ({ckpt}); run `ctxtag train --loss {cfg}`")
            continue
        model, _ = load_cnn(ckpt, device)
        data = load_splits(p.features, p.labelled, p.weights / "weights.npz", p.splits / "split.csv", contexts, cfg)
        probs, test_loss = predict(model, data.datasets["test"], params.train, device)
        y_obs = data.labels["test"]
        res = {"test_loss": test_loss, "n_test": len(y_obs),
               "observed": metrics.report(y_obs, probs, contexts, params.evaluate.threshold)}
        if truth is not None:
            rows = {t: i for i, t in enumerate(truth[0])}
            y_true = truth[1][[rows[t] for t in data.track_ids["test"]]]
            res["truth"] = metrics.report(y_true, probs, contexts, params.evaluate.threshold)
        roc_pr_curves(y_obs, probs, contexts, p.reports / f"plots/roc_pr_{cfg}.png",
                      f"Test ROC / PR per context — {cfg} (observed labels)")
        results[cfg] = res

    report = {"main": params.train.loss, "threshold": params.evaluate.threshold, "configs": results}
    write_json(report, p.reports / "evaluate.json")
    text = ["# Audio auto-tagger: loss configurations side by side (macro averages, test split)", "",
            "## Against the observed playlist labels (what the paper can measure)", "", table(results, "observed")]
    if truth is not None:
        text += ["", "## Against the complete true labels of the generated world", "", table(results, "truth")]
    (p.reports / "table2.md").write_text("\n".join(text) + "\n", encoding="utf-8")
    print("\n".join(text))

    main = results.get(params.train.loss)
    if main:
        pc = main["observed"]["per_context"]
        bar_chart({m: [pc[c][m] or 0.0 for c in contexts] for m in ("roc_auc", "recall", "precision", "f1", "tn_rate")},
                  contexts, p.reports / "plots/per_context_metrics.png",
                  f"Per-context test metrics ({params.train.loss}, observed labels)", "score")
    _log_to_mlflow(params, results)
    return {cfg: {k: r["observed"]["macro"][k] for k in ("roc_auc", "recall", "precision", "f1")} for cfg, r in results.items()}


def _log_to_mlflow(params: Params, results: dict) -> None:
    """Test metrics and plots go into each configuration's training run."""
    if not params.train.log_mlflow:
        return
    import mlflow

    from ctxtag.common.tracking import setup_mlflow

    setup_mlflow(params.train.experiment)
    for cfg, res in results.items():
        run_file = params.paths.models / cfg / "mlflow_run.json"
        if not run_file.exists():
            continue
        with mlflow.start_run(run_id=json.loads(run_file.read_text())["run_id"]):
            for key in ("observed", "truth"):
                if key in res:
                    mlflow.log_metrics({f"test_{key}_{m}": v for m, v in res[key]["macro"].items()
                                        if v is not None and np.isfinite(v)})
            mlflow.log_artifact(str(params.paths.reports / f"plots/roc_pr_{cfg}.png"), "plots")
            mlflow.log_artifact(str(params.paths.reports / "table2.md"))
