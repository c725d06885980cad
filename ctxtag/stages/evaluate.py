"""`ctxtag evaluate`: Table 1/2-style metrics of every trained loss configuration, side by side.

Scored against the observed (playlist) labels, as the paper must, and — on the generated world —
against the complete true labels, which show how much each weighting recovers missing negatives.
"""

from __future__ import annotations

from ctxtag.common.chance import chance_scores
from ctxtag.common.headline import write_report
from ctxtag.common.io import read_matrix, write_text
from ctxtag.common.plots import bar_chart, roc_pr_curves
from ctxtag.common.tracking import Tracker, log_metrics, recorded_run_id
from ctxtag.common.training import pick_device
from ctxtag.config import Params
from ctxtag.tagger import metrics
from ctxtag.tagger.dataset import load_splits
from ctxtag.tagger.evaluation import evaluate_tagger, table
from ctxtag.tagger.inference import load_cnn
from ctxtag.tagger.metrics import bootstrap

# the figures `dvc metrics show` compares between runs (ctxtag.common.headline)
HEADLINE = ["configs.*.test_loss", "configs.*.observed.macro.roc_auc", "configs.*.observed.macro.pr_auc",
            "configs.*.observed.macro.f1", "configs.*.truth.macro.roc_auc", "configs.*.truth.macro.f1",
            "bootstrap.observed.intervals.*.roc_auc.*", "bootstrap.observed.paired.*.roc_auc.*",
            "bootstrap.observed.paired.*.recall.*"]


def run(params: Params) -> dict:
    p, contexts = params.paths, params.contexts
    device = pick_device(params.train.device)
    truth = read_matrix(p.true_labels_csv, contexts) if p.true_labels_csv.exists() else None
    results: dict[str, dict] = {}
    scored: dict[str, tuple] = {}                 # cfg -> (test track ids, probabilities, labels)
    y_train = None                                # the training tracks' observed labels (chance rows)
    for cfg in params.train.configs:
        ckpt = p.checkpoint(cfg)
        if not ckpt.exists():
            print(f"evaluate: no model for {cfg} ({ckpt}); run `ctxtag train --loss {cfg}`")
            continue
        model, _ = load_cnn(ckpt, device)
        data = load_splits(p, contexts, cfg)
        res, probs, labels = evaluate_tagger(model, data, truth, contexts, params.train, params.evaluate.threshold,
                                             device)
        scored[cfg] = (list(data.track_ids["test"]), probs, labels)
        y_train = data.labels["train"]
        roc_pr_curves(data.labels["test"], probs, contexts, p.plot(f"roc_pr_{cfg}"),
                      f"Test ROC / PR per context — {cfg} (observed labels)")
        results[cfg] = res

    boot = _bootstrap(params, scored)
    chance, chance_boot = _chance(params, y_train, scored)
    report = {"main": params.train.loss, "threshold": params.evaluate.threshold, "configs": results,
              "bootstrap": boot, "chance": chance, "chance_bootstrap": chance_boot}
    write_report(report, p, "evaluate", HEADLINE)

    def rows(key: str) -> str:
        """The configurations, then the chance rows, with every row's interval (the chance rows'
        from the same resamples: same seed, same tracks); paired differences for the configurations."""
        b = dict(boot.get(key) or {})
        if b and chance_boot:
            b["intervals"] = {**b["intervals"], **chance_boot[key]["intervals"]}
        return table({**results, **chance}, key, b or None)

    text = ["# Audio auto-tagger: loss configurations side by side (macro averages, test split)", "",
            "## Against the observed playlist labels (what the paper can measure)", "", rows("observed")]
    if truth is not None:
        text += ["", "## Against the complete true labels of the generated world", "", rows("truth")]
    write_text("\n".join(text) + "\n", p.reports / "table2.md")
    print("\n".join(text))

    main = results.get(params.train.loss)
    if main:
        pc = main["observed"]["per_context"]
        bar_chart({m: [pc[c][m] or 0.0 for c in contexts] for m in ("roc_auc", "recall", "precision", "f1", "tn_rate")},
                  contexts, p.plot("per_context_metrics"),
                  f"Per-context test metrics ({params.train.loss}, observed labels)", "score")
    _log_to_mlflow(params, results)
    return {cfg: {k: r["observed"]["macro"][k] for k in ("roc_auc", "recall", "precision", "f1")} for cfg, r in results.items()}


def _bootstrap(params: Params, scored: dict[str, tuple]) -> dict:
    """Intervals per configuration and paired differences from the first (`none`: no weights),
    against each set of labels; pairing needs every configuration on the same test tracks."""
    cfg = params.evaluate
    if not scored or cfg.bootstrap <= 0:
        return {}
    tracks = [t for t, _, _ in scored.values()]
    if any(t != tracks[0] for t in tracks):
        raise ValueError("the configurations were scored on different test tracks; rerun `ctxtag features`")
    first = next(iter(scored.values()))[2]
    return {key: bootstrap(y, {c: probs for c, (_, probs, _) in scored.items()}, cfg.bootstrap, params.seed,
                           cfg.threshold, cfg.level, baseline=next(iter(scored)))
            for key, y in first.items()}


CHANCE_ROWS = {"random": "chance: random scores", "popularity": "chance: training prevalence"}


def _chance(params: Params, y_train, scored: dict[str, tuple]) -> tuple[dict, dict]:
    """The two chance taggers (ctxtag.common.chance: seeded uniform scores, each context's
    training prevalence) on the configurations' test tracks: their metrics against each set of
    labels, and their bootstrap intervals."""
    if not scored or y_train is None:
        return {}, {}
    ids, _, labels = next(iter(scored.values()))
    ev = params.evaluate
    scores = {CHANCE_ROWS[k]: s for k, s in chance_scores(y_train.mean(axis=0), len(ids), params.seed).items()}
    results = {name: {key: metrics.report(y, s, params.contexts, ev.threshold) for key, y in labels.items()}
               for name, s in scores.items()}
    boot = {key: bootstrap(y, scores, ev.bootstrap, params.seed, ev.threshold, ev.level) for key, y in labels.items()} \
        if ev.bootstrap > 0 else {}
    return results, boot


def _log_to_mlflow(params: Params, results: dict) -> None:
    """Test metrics and plots go into each configuration's training run (MLflow down: a warning,
    the reports are written already)."""
    tracker = Tracker(params.train.experiment if params.train.log_mlflow else None)
    for cfg, res in results.items():
        run_id = recorded_run_id(params.paths.mlflow_run(cfg))
        if run_id is not None:
            tracker.call(_log_run, params, cfg, res, run_id)


def _log_run(params: Params, cfg: str, res: dict, run_id: str) -> None:
    import mlflow

    p = params.paths
    with mlflow.start_run(run_id=run_id):
        for key in ("observed", "truth"):
            if key in res:
                log_metrics({f"test_{key}_{m}": v for m, v in res[key]["macro"].items()})
        mlflow.log_artifact(str(p.plot(f"roc_pr_{cfg}")), "plots")
        mlflow.log_artifact(str(p.reports / "table2.md"))
