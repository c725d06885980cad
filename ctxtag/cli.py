"""`ctxtag` command line: one subcommand per pipeline stage (the DVC stages call these)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ctxtag.common.quarantine import InputError
from ctxtag.config import ConfigError, Params, load_params
from ctxtag.vocabulary import MODEL_FAMILIES

# subcommand -> (stage module in ctxtag.stages, its keyword arguments from the command line)
STAGES: dict[str, tuple[str, Callable[[argparse.Namespace], dict]]] = {
    "synth": ("synth", lambda a: {"audio": not a.no_audio}),
    "label": ("label", lambda a: {}),
    "weights": ("weights", lambda a: {}),
    "split": ("split", lambda a: {}),
    "ingest-logs": ("ingest_logs", lambda a: {}),
    "track-features": ("track_features", lambda a: {"partition": a.partition, "combine_only": a.combine}),
    "publish-features": ("publish_features", lambda a: {}),
    "streams": ("streams", lambda a: {}),
    "user-models": ("user_models", lambda a: {}),
    "features": ("features", lambda a: {}),
    "embedding-features": ("embedding_features", lambda a: {}),
    "embeddings": ("embeddings", lambda a: {}),
    "train": ("train", lambda a: {"loss": a.loss}),
    "evaluate": ("evaluate", lambda a: {}),
    "robustness": ("robustness", lambda a: {}),
    "validate": ("validate", lambda a: {}),
}


def _run_stage(params: Params, args: argparse.Namespace) -> dict:
    module, kwargs = STAGES[args.command]
    result = importlib.import_module(f"ctxtag.stages.{module}").run(params, **kwargs(args))
    if args.command == "split":       # the full report is in reports/split.json
        return {"overlap": result["overlap"], **{k: v["tracks"] for k, v in result["splits"].items()}}
    return result


def _register(params: Params, args: argparse.Namespace) -> dict:
    from ctxtag.platform.registry import register, register_context_model, register_embeddings

    if args.family == "context":
        return register_context_model(params, why=args.why or "new training run")
    if args.family == "embeddings":
        return register_embeddings(params, why=args.why or "new training run")
    return register(params, why=args.why or "new training run")


def _promote(params: Params, args: argparse.Namespace) -> dict:
    from ctxtag.platform.promotion import promote

    return promote(params, version=args.version, why=args.why, force=args.force, family=args.family)


def _publish(params: Params, args: argparse.Namespace) -> dict:
    from ctxtag.platform.publication import publish

    return publish(params, online=args.online, redis_url=args.redis_url, registry=args.feast_registry)


def _release(params: Params, args: argparse.Namespace) -> dict:
    """register, promote, then publish the champions' features, every family in one process;
    exit 3 when a gate refused one (the others are promoted and published all the same)."""
    from ctxtag.platform.promotion import PromotionRefused, promote_each
    from ctxtag.platform.registry import register_each

    why = args.why or "new training run"
    registered = register_each(params, why=why)
    decisions = promote_each(params, {f: r["version"] for f, r in registered.items()}, why=why)
    result = {f: {**registered[f], **decisions[f]} for f in registered}
    try:
        result["published"] = _publish(params, args)
    except Exception:
        print(json.dumps(result, indent=2, ensure_ascii=False, default=str))     # what was registered and promoted
        raise
    refused = [f"{f}: {d['refused']}" for f, d in decisions.items() if "refused" in d]
    if refused:
        print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
        raise PromotionRefused("; ".join(refused))
    return result


def _rollback(params: Params, args: argparse.Namespace) -> dict:
    from ctxtag.platform.promotion import rollback

    return rollback(params, to=args.to, why=args.why, family=args.family)


def _audit(params: Params, args: argparse.Namespace) -> dict:
    from ctxtag.platform.registry import audit

    return audit(params, args.family)


def _summary(params: Params, args: argparse.Namespace) -> dict:
    from ctxtag.platform.summary import print_summary

    return print_summary(params)


def _serve(params: Params, args: argparse.Namespace) -> dict:
    """uvicorn in ``--workers`` processes with a socket each (ctxtag.serving.workers), of one thread
    each (torch, OpenMP and OpenBLAS pools of one: on a few cores, per-library thread pools fight
    each other under concurrent requests)."""
    from ctxtag.serving.api import api_keys

    host = args.host or params.serving.host
    if host not in ("127.0.0.1", "localhost", "::1") and not api_keys(params):
        raise ConfigError(f"serving on {host} (beyond this machine) needs API keys in ${params.serving.api_keys_env}")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ["CTXTAG_PARAMS"] = str(Path(args.params).resolve())
    from ctxtag.serving.workers import serve

    status = serve("ctxtag.serving.api:app_from_env", host, args.port or params.serving.port,
                   args.workers or params.serving.workers)
    if status:
        raise RuntimeError("the API's workers kept dying at start-up (their errors are above)")
    return {"stopped": True}


def _predict(params: Params, args: argparse.Namespace) -> dict:
    """The registry's @champion (what `ctxtag serve` answers with), or the checkpoint --model names."""
    from ctxtag.tagger.inference import predict_files

    if args.model:
        model = name = Path(args.model)
        if not model.exists():
            raise FileNotFoundError(f"--model {model}: no such checkpoint")
    else:
        from ctxtag.platform.registry import champion_checkpoint

        try:
            model, name = champion_checkpoint(params)
        except LookupError as exc:
            raise ConfigError(f"{exc}; or name a checkpoint: --model {params.paths.checkpoint(params.train.loss)}") from None
        except ValueError as exc:                # the registered file is not what was registered
            raise ConfigError(f"refusing the @champion: {exc}") from None
    predictions, errors = predict_files(model, [Path(f) for f in args.audio], top=args.top,
                                        track=params.tagging if args.track else None)
    for e in errors:
        print(f"ctxtag predict: skipped {e['file']}: {e['error']}", file=sys.stderr)
    if not predictions:
        raise InputError(args.audio[0], "no file could be read")
    result = {"model": str(name), "predictions": predictions, "errors": errors}
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return result
    print(f"model: {name}")
    for pred in predictions:
        print(pred["file"] + (f"  (mean of {pred['windows']} windows)" if "windows" in pred else ""))
        for c in pred["contexts"]:
            print(f"  {c['context']:<10} {c['probability']:.3f}  " + "#" * int(round(c["probability"] * 30)))
    return result


def _title_agreement(params: Params, args: argparse.Namespace) -> dict:
    from ctxtag.labelling.title_agreement import agreement

    result = agreement(Path(args.titles), params.contexts)
    if args.out:
        from ctxtag.common.io import write_json

        write_json(result, Path(args.out))
    shown = dict(result)
    shown["disagreements"] = result["disagreements"][: args.show]
    return shown


COMMANDS: dict[str, tuple[Callable[[Params, argparse.Namespace], dict], str]] = {
    "synth": (_run_stage, "generate the demo world (tracks, audio, users, playlists, listening logs, truth)"),
    "label": (_run_stage, "playlists -> context labels, counts, co-occurrence, stats (ICASSP 2020 §3)"),
    "weights": (_run_stage, "negative (exact / ignore-zeros / pairwise) and positive TF-IDF loss weights"),
    "split": (_run_stage, "65/10/25 stratified split, no artist or album across splits"),
    "ingest-logs": (_run_stage, "listening logs -> validated, immutable date-partitioned event lake"),
    "track-features": (_run_stage, "tagger context probabilities and audio embedding of every track"),
    "publish-features": (_run_stage, "user snapshots, track features, listening embeddings -> Feast offline store"),
    "streams": (_run_stage, "labelled streams + point-in-time Feast user features + track audio features"),
    "user-models": (_run_stage, "user-aware, situational and joint models per split type, user-centric eval"),
    "features": (_run_stage, "96 x 646 log-mel of every labelled track, cached by audio content"),
    "embedding-features": (_run_stage, "128-bin hop-512 log-mel of the first 30 s of every track (Chen et al.)"),
    "embeddings": (_run_stage, "user branch + Siamese audio branch (Chen et al.), Table 1, hit rate, transfer"),
    "train": (_run_stage, "train the CNN with one loss configuration of Table 2 (MLflow-tracked)"),
    "evaluate": (_run_stage, "Table-2-style metrics of every trained configuration, ROC/PR plots"),
    "robustness": (_run_stage, "the tagger on perturbed test audio: gain, noise, stretch, pitch, MP3"),
    "register": (_register, "register the train.loss tagger in MLflow as a new version, alias @challenger"),
    "promote": (_promote, "promotion gate: move @champion to @challenger if it is not worse (audited)"),
    "release": (_release, "register, promote through the gates, publish the champions' features (make demo)"),
    "publish": (_publish, "the context @champion's track features + the user features -> the served Feast store"),
    "rollback": (_rollback, "move @champion back to the previous (or a named) version (audited)"),
    "audit": (_audit, "who promoted or rolled back which version, when and why"),
    "validate": (_run_stage, "Great Expectations gates: playlists, listening logs, labels, track features"),
    "serve": (_serve, "the HTTP API (FastAPI): contexts for audio / user+device+time, recommendations"),
    "predict": (_predict, "top contexts with probabilities for audio files"),
    "title-agreement": (_title_agreement, "agreement of the title matcher with a reference TSV"),
    "summary": (_summary, "headline figures, tables and plots of the last `dvc repro`"),
}


EXIT_CODES = """exit codes:
  0  done
  2  bad input or params (the file, and the row where there is one, are named)
  3  refused: the promotion gate said no, or nothing to promote / roll back to
  4  a data quality gate failed (ctxtag validate)
  5  a service is unreachable (the MLflow tracking server): nothing was done; rerun once it is back.
     Stages that only log to MLflow (train, user-models, embeddings, evaluate) warn and go on instead"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctxtag", description=__doc__, epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=None,
                        help="params file (default: ./params.yaml, or the embedded defaults where there is none)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == "synth":
            p.add_argument("--no-audio", action="store_true", help="skip rendering the audio clips")
        if name in ("publish", "release"):
            p.add_argument("--online", choices=["sqlite", "redis"],
                           default=os.environ.get("CTXTAG_ONLINE_STORE", "sqlite"),
                           help="online store (default: $CTXTAG_ONLINE_STORE or sqlite)")
            p.add_argument("--redis-url", default=os.environ.get("CTXTAG_REDIS_URL", "localhost:6379"))
            p.add_argument("--feast-registry", metavar="URL", default=os.environ.get("CTXTAG_FEAST_REGISTRY") or None,
                           help="a shared SQL registry (postgresql+psycopg2://user@host:port/db; default "
                                "$CTXTAG_FEAST_REGISTRY, else the file registry in paths.online)")
        if name == "track-features":
            p.add_argument("--partition", metavar="K/N", default=None,
                           help="only partition K of N (N = track_features.partitions); skipped when its part is current")
            p.add_argument("--combine", action="store_true",
                           help="only combine the parts (refused while one is missing or stale)")
        if name == "train":
            p.add_argument("--loss", default=None, help="loss configuration (default: train.loss in params)")
        if name in ("register", "promote", "rollback", "release"):
            p.add_argument("--why", default="", help="reason recorded in the audit trail")
        if name in ("register", "promote", "rollback", "audit"):
            p.add_argument("--family", choices=list(MODEL_FAMILIES), default="tagger",
                           help="tagger: the CNN (registry.model_name); context: the pyfunc with user/device/time; "
                                "embeddings: Chen et al.'s listening embeddings (registry.embeddings_model_name)")
        if name == "promote":
            p.add_argument("--version", default=None, help="version to promote (default: @challenger)")
            p.add_argument("--force", action="store_true", help="promote even if the gate refuses (audited)")
        if name == "rollback":
            p.add_argument("--to", default=None, help="version (default: the previous champion)")
        if name == "serve":
            p.add_argument("--host", default=None, help="default: serving.host")
            p.add_argument("--port", type=int, default=None, help="default: serving.port")
            p.add_argument("--workers", type=int, default=None, help="worker processes (default: serving.workers)")
        if name == "predict":
            p.add_argument("audio", nargs="+", help="audio files (wav, flac, ogg, mp3)")
            p.add_argument("--model", default=None,
                           help="a checkpoint (data/models/<loss>/best.pt); default: the registry's @champion")
            p.add_argument("--top", type=int, default=5)
            p.add_argument("--json", action="store_true", help="print the predictions as JSON")
            p.add_argument("--track", action="store_true",
                           help="the whole track: the mean over windows of the crop's length (params: tagging); "
                                "default: the paper's one crop")
        if name == "title-agreement":
            p.add_argument("--titles", default="../shared/data/playlist_titles/deezer_playlist_titles.tsv")
            p.add_argument("--out", default=None, help="write the full report (JSON) here")
            p.add_argument("--show", type=int, default=20, help="disagreements to print")
    return parser


def _service_down(command: str, exc: Exception) -> int:
    """Exit 5 with one line naming the tracking URI and the cause when ``exc`` is MLflow being
    unreachable (within the bounded retries of ctxtag.common.tracking.HTTP_DEFAULTS); anything else
    is raised on."""
    from ctxtag.common.tracking import unreachable

    down = unreachable(exc) if "mlflow" in sys.modules else None      # no MLflow call, no MLflow error
    if down is None:
        raise exc
    print(f"ctxtag {command}: {down}", file=sys.stderr)
    return 5


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.params is not None and not Path(args.params).is_file():
            raise ConfigError(f"--params {args.params}: no such file")     # not silently the defaults
        args.params = args.params or "params.yaml"
        params = load_params(args.params)
        func, _ = COMMANDS[args.command]
        start = time.perf_counter()
        result = func(params, args)
    except (KeyError, IndexError):         # a bug, not the user's input
        raise
    except (ConfigError, InputError, FileNotFoundError, LookupError) as exc:   # LookupError: no @champion,
        print(f"ctxtag {args.command}: error: {exc}", file=sys.stderr)         # nothing published
        return 2
    except RuntimeError as exc:
        from ctxtag.platform.gates import GateFailed
        from ctxtag.platform.promotion import PromotionRefused

        if isinstance(exc, GateFailed):
            print(f"ctxtag {args.command}: {exc}", file=sys.stderr)
            return 4
        if not isinstance(exc, PromotionRefused):
            return _service_down(args.command, exc)
        print(f"ctxtag {args.command}: refused: {exc}", file=sys.stderr)
        return 3
    except Exception as exc:
        return _service_down(args.command, exc)
    seconds = time.perf_counter() - start
    if args.command not in ("predict", "summary"):
        print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    if args.command not in UNTIMED:
        from ctxtag.common import timings

        timings.record(params.paths.timings, step_name(params, args), seconds)
    print(f"ctxtag {args.command}: done in {seconds:.1f} s", file=sys.stderr)
    return 0


UNTIMED = ("predict", "summary", "serve", "audit", "title-agreement")    # not steps of a pipeline run


def step_name(params: Params, args: argparse.Namespace) -> str:
    """The command as `ctxtag summary` lists it: train@<loss>, register@<family>, ..."""
    if args.command == "train":
        return f"train@{args.loss or params.train.loss}"
    family = getattr(args, "family", None)
    return f"{args.command}@{family}" if family else args.command


if __name__ == "__main__":
    raise SystemExit(main())
