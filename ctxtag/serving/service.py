"""What the serving API answers, without HTTP: contexts for audio (the registry's @champion tagger),
contexts for a (user, device, time) (the situational GBT on Feast online user features),
track recommendations for a user in a context (the user-aware tagger over the catalogue), and new
releases for a user by the cosine similarity of the listening embeddings (Chen et al.; exact or
HNSW search, ctxtag.serving.ann).

Features are assembled by the same functions as training (ctxtag.context.streams.situation,
ctxtag.context.features.blocks), so a served request sees exactly what a training row saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ctxtag.config import Params
from ctxtag.context.features import blocks
from ctxtag.context.streams import situation, user_feature_refs
from ctxtag.platform.feast_definitions import offline_file


class UnknownUser(LookupError):
    pass


@dataclass
class Ranked:
    names: list[str]
    scores: np.ndarray

    def top(self, k: int) -> list[dict]:
        order = np.argsort(-self.scores, kind="stable")[:k]
        return [{"name": self.names[j], "score": round(float(self.scores[j]), 5)} for j in order]


class Service:
    def __init__(self, params: Params, root: Path, online: str = "sqlite", redis_url: str = "localhost:6379"):
        from ctxtag.audio.melspec import LogMel
        from ctxtag.context import artifacts
        from ctxtag.platform.feature_store import open_store

        self.params, self.root = params, Path(root)
        p = params.paths
        self.store = open_store(self.root / p.feast, online, redis_url=redis_url)
        self.user_refs = user_feature_refs(self.store)
        models = self.root / p.user_models / params.serving.split
        self.situational = artifacts.load_situational(artifacts.model_path(models, "situational"))
        self.user_aware = artifacts.load_tagger(artifacts.model_path(models, "audio_user"))
        self.frontend = LogMel(params.audio).eval()
        self.tagger, self.tagger_version = self._champion()
        tracks = self.store.get_online_features(
            features=["track_audio_features:audio_embedding", "track_audio_features:context_probs"],
            entity_rows=[{"track_id": t} for t in self._catalogue()]).to_dict()
        self.tracks = pd.DataFrame(tracks).dropna(subset=["audio_embedding"]).reset_index(drop=True)
        self.listening = self._listening_indexes()

    def _listening_indexes(self) -> dict[str, tuple[list[str], object]] | None:
        """The new releases' (cold_start) listening embeddings from the online store, indexed for
        cosine search. None when not published."""
        from ctxtag.serving import ann

        path = offline_file(self.root / self.params.paths.feast, "track_embeddings")
        if not path.exists():
            return None
        ids = pd.read_parquet(path, columns=["track_id"])["track_id"].astype(str).tolist()
        got = pd.DataFrame(self.store.get_online_features(
            features=["track_listening_embedding:listening_embedding", "track_listening_embedding:cold_start"],
            entity_rows=[{"track_id": t} for t in ids]).to_dict()).dropna(subset=["listening_embedding"])
        cfg = self.params.embeddings
        new = got[got["cold_start"].fillna(False).astype(bool)]
        vectors = np.stack(new["listening_embedding"].to_numpy()) if len(new) else np.zeros((0, cfg.dim))
        return {"new": (new["track_id"].astype(str).tolist(),
                        ann.build(vectors, cfg.ann_min_tracks, cfg.ann_m, cfg.ann_ef_search))}

    def _catalogue(self) -> list[str]:
        frame = pd.read_parquet(offline_file(self.root / self.params.paths.feast, "track_features"), columns=["track_id"])
        return frame["track_id"].astype(str).tolist()

    def _champion(self):
        import mlflow

        from ctxtag.common.tracking import setup_mlflow

        setup_mlflow(self.params.train.experiment, self.root)
        name = self.params.registry.model_name
        client = mlflow.MlflowClient()
        version = client.get_model_version_by_alias(name, "champion").version
        # the local store's locations are relative to the project root, which need not be the cwd
        location = client.get_model_version_download_uri(name, version)
        if "://" not in location and not Path(location).is_absolute():
            location = str(self.root / location)
        model = mlflow.pytorch.load_model(location, map_location="cpu")
        return model.eval(), f"{name}/{version}"

    # --- audio -> contexts (the champion CNN) ---------------------------------------------------
    @torch.no_grad()
    def audio_contexts(self, clip: np.ndarray) -> Ranked:
        mel = self.frontend(torch.from_numpy(clip)[None])
        return Ranked(list(self.params.contexts), torch.sigmoid(self.tagger(mel))[0].numpy())

    # --- (user, device, network, time) -> contexts (situational GBT) ----------------------------
    def _user_frame(self, user_id: str, n: int = 1) -> pd.DataFrame:
        got = self.store.get_online_features(features=self.user_refs, entity_rows=[{"user_id": user_id}]).to_dict()
        frame = pd.DataFrame(got)
        if frame["n_streams"].isna().all():
            raise UnknownUser(user_id)
        return frame.iloc[np.zeros(n, dtype=np.int64)].reset_index(drop=True)   # one row per track

    def _situation_frame(self, user_id: str, device: str, network: str, when: pd.Timestamp,
                         age: float | None, gender: str | None, n: int = 1) -> pd.DataFrame:
        ev = pd.DataFrame({"event_timestamp": [when.tz_convert("UTC")],
                           "utc_offset_min": [when.utcoffset().total_seconds() / 60]})
        row = pd.concat([situation(ev), pd.DataFrame({"device": [device], "network": [network], "age": [age],
                                                      "gender": [gender]})], axis=1)
        frame = row.iloc[np.zeros(n, dtype=np.int64)].reset_index(drop=True)
        return pd.concat([frame, self._user_frame(user_id, n).drop(columns=["user_id"], errors="ignore")], axis=1)

    def _blocks(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        p = self.params
        return blocks(frame, p.contexts, p.logs.devices, p.logs.networks, p.logs.genders, p.user_models.history_dim)

    def situation_contexts(self, user_id: str, device: str, network: str, when: pd.Timestamp,
                           age: float | None = None, gender: str | None = None) -> Ranked:
        from ctxtag.context import situational

        frame = self._situation_frame(user_id, device, network, when, age, gender)
        probs = situational.predict(self.situational, self._blocks(frame), len(self.params.contexts))[0]
        return Ranked(list(self.params.contexts), probs)

    # --- user + context -> tracks (user-aware tagger over the catalogue) ------------------------
    def recommend(self, user_id: str, context: str) -> Ranked:
        from ctxtag.context import train as user_train

        n = len(self.tracks)
        frame = self._user_frame(user_id, n)
        frame["audio_embedding"] = self.tracks["audio_embedding"].to_numpy()
        frame["context_probs"] = self.tracks["context_probs"].to_numpy()
        probs = user_train.predict(self.user_aware, self._blocks(frame))
        j = self.params.contexts.index(context)
        return Ranked(self.tracks["track_id"].astype(str).tolist(), probs[:, j])

    # --- user -> new releases (listening embeddings, cosine) ---------------------------------------
    def recommend_new_releases(self, user_id: str, k: int) -> Ranked:
        """The k new releases whose AE is closest (cosine) to the user's UE."""
        got = self.store.get_online_features(features=["user_listening_embedding:listening_embedding"],
                                             entity_rows=[{"user_id": user_id}]).to_dict()
        ue = got["listening_embedding"][0]
        if ue is None:
            raise UnknownUser(user_id)
        ids, index = self.listening["new"]
        scores, idx = index.search(np.asarray(ue, dtype=np.float32)[None], k)
        return Ranked([ids[i] for i in idx[0]], scores[0])
