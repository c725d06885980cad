"""Shadow scoring: with ``serving.shadow: true`` each /predict/audio and /contexts request is also
scored by the family's ``@challenger``, off the request path, and the agreement with the champion's
answer is written to the registry, so the gate can weigh live traffic beside the test split.

One daemon thread per family and worker process takes requests from a bounded queue (full: the
request is dropped from the shadow and counted, never delayed); every ``serving.shadow_flush_s`` it
writes its figures as a tag of the challenger's version, ``shadow.<host>-<pid>`` (one per worker,
so workers never overwrite each other); ``agreement`` sums them (ctxtag audit, the gate's record).

Figures per request, against the champion's probabilities: the top-1 context agrees; the share of
the top 3 they share; the mean absolute difference of the probabilities.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np

from ctxtag.config import Params

TAG = "shadow."


class Shadow:
    def __init__(self, params: Params, root: Path, family: str, version: str, predict: Callable[[object], np.ndarray]):
        self.params, self.family, self.version, self.predict = params, family, version, predict
        self.root = Path(root)
        # one tag per shadow: a worker's next service (after a promotion) does not overwrite it
        self.tag = f"{TAG}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.stats = {"requests": 0, "top1_agree": 0, "top3_shared": 0.0, "abs_diff": 0.0, "dropped": 0, "errors": 0,
                      "since": datetime.now(UTC).isoformat(timespec="seconds")}
        self._lock = threading.Lock()                   # request threads count drops, the worker the rest
        self._queue: queue.Queue = queue.Queue(maxsize=params.serving.shadow_queue)
        self._written, self._client, self._stop = -1, None, threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"ctxtag-shadow-{family}", daemon=True)
        self._thread.start()

    def submit(self, inputs, champion: np.ndarray) -> None:
        """Queue a request's inputs and the champion's probabilities; never blocks."""
        try:
            self._queue.put_nowait((inputs, np.asarray(champion)))
        except queue.Full:
            with self._lock:
                self.stats["dropped"] += 1

    def close(self, wait: bool = True) -> None:
        """Score what is queued, write the figures, stop (``wait``: until it has; never blocks
        otherwise)."""
        self._stop.set()
        with contextlib.suppress(queue.Full):             # wakes the thread now; a full queue: at its next get
            self._queue.put_nowait(None)
        if wait:
            self._thread.join(timeout=60)

    def _loop(self) -> None:
        last = time.monotonic()
        while True:
            try:
                item = self._queue.get(timeout=self.params.serving.shadow_flush_s)
            except queue.Empty:
                item = ...
            if item is None or (self._stop.is_set() and self._queue.empty()):
                if item is not None and item is not ...:
                    self._score(*item)
                self._flush()
                return
            if item is not ...:
                self._score(*item)
            if time.monotonic() - last >= self.params.serving.shadow_flush_s:
                self._flush()
                last = time.monotonic()

    def _score(self, inputs, champion: np.ndarray) -> None:
        try:
            challenger = np.asarray(self.predict(inputs))
        except Exception:                     # noqa: BLE001 - a failing challenger is a figure, not an outage
            with self._lock:
                self.stats["errors"] += 1
            return
        with self._lock:
            s = self.stats
            s["requests"] += 1
            s["top1_agree"] += int(np.argmax(champion) == np.argmax(challenger))
            s["top3_shared"] += len(_top3(champion) & _top3(challenger)) / 3
            s["abs_diff"] += float(np.abs(champion - challenger).mean())

    def _flush(self) -> None:
        """The figures as a tag of the challenger's version (off the request path; a registry that
        is down is tried again at the next flush)."""
        with self._lock:
            stats = dict(self.stats)
        seen = stats["requests"] + stats["dropped"] + stats["errors"]
        if seen == self._written:
            return
        import mlflow

        from ctxtag.common.tracking import tracking_uri
        from ctxtag.platform.registry import model_name

        try:
            if self._client is None:                    # its own: set_tracking_uri is process-wide
                uri = tracking_uri(self.root)
                self._client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
            figures = {**stats, "until": datetime.now(UTC).isoformat(timespec="seconds")}
            self._client.set_model_version_tag(model_name(self.params, self.family), self.version, self.tag,
                                               json.dumps(figures))
            self._written = seen
        except Exception:                     # noqa: BLE001 - the figures stay counted for the next flush
            pass


def _top3(p: np.ndarray) -> set[int]:
    return set(np.argsort(-p, kind="stable")[:3].tolist())


def agreement(tags: dict[str, str]) -> dict | None:
    """The shadow figures of one version, summed over its workers' tags (None: never shadowed)."""
    parts = [json.loads(v) for k, v in tags.items() if k.startswith(TAG)]
    if not parts:
        return None
    n = sum(p["requests"] for p in parts)
    out = {"requests": n, "dropped": sum(p["dropped"] for p in parts), "errors": sum(p["errors"] for p in parts),
           "workers": len(parts), "since": min(p["since"] for p in parts), "until": max(p["until"] for p in parts)}
    if n:
        out |= {"top1_agreement": sum(p["top1_agree"] for p in parts) / n,
                "top3_overlap": sum(p["top3_shared"] for p in parts) / n,
                "mean_abs_diff": sum(p["abs_diff"] for p in parts) / n}
    return out


def _situational(model, m: int, x: dict) -> np.ndarray:
    from ctxtag.context import situational

    return situational.predict(model, x, m)[0]


def start(params: Params, root: Path, champions: dict[str, str]) -> dict[str, Shadow]:
    """A shadow per family whose @challenger is not its champion: the tagger's (for /predict/audio)
    and the context model's situational part (for /contexts), from their checked files."""
    import mlflow

    from ctxtag.common.tracking import tracking_uri
    from ctxtag.context import artifacts
    from ctxtag.platform.registry import alias_version, champion_files, model_name
    from ctxtag.tagger.inference import clip_probabilities, load_tagger

    uri = tracking_uri(root)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    shadows = {}
    for family, champion in champions.items():
        name, version = model_name(params, family), None
        try:
            version = alias_version(client, name, "challenger")
            if version is None or f"{name}/{version}" == champion:
                continue
            files, _ = champion_files(params, family, root, version=version)
            if family == "tagger":
                predict = partial(clip_probabilities, load_tagger(files["tagger"])[0])
            else:
                predict = partial(_situational, artifacts.load_situational(files["situational"]), len(params.contexts))
        except Exception as exc:          # noqa: BLE001 - a challenger that cannot load is not an outage
            print(f"warning: no shadow for {name}/{version}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        shadows[family] = Shadow(params, root, family, version, predict)
    return shadows
