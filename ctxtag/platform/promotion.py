"""Moving ``@champion``: only through the promotion gate (or forced, and audited as such), and back.

The gate scores challenger and champion on the same test data, now (ctxtag.platform.gate_scores);
``decide`` is its rule, a pure function of the two versions' per-context ROC-AUCs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ctxtag.config import Params
from ctxtag.platform.gate_scores import context_model_auc, embeddings_auc, tagger_test_auc
from ctxtag.platform.registry import (
    Unloadable,
    alias_version,
    audit_log,
    model_name,
    open_client,
    record,
)


class PromotionRefused(RuntimeError):
    """The gate said no; the message carries its reasons."""


@dataclass
class GateResult:
    passed: bool
    reasons: list[str]
    challenger_macro_auc: float
    champion_macro_auc: float | None
    context_drops: dict[str, float] = field(default_factory=dict)


def gate(params: Params, challenger: str, champion: str | None, family: str = "tagger") -> GateResult:
    """Both versions scored now on the same test data: the tagger on the test tracks, the context
    model on test streams, the listening embeddings on the cold-start gate pairs."""
    score = {"tagger": tagger_test_auc, "context": context_model_auc, "embeddings": embeddings_auc}[family]
    chal = score(params, challenger)
    champ, note = None, None
    if champion is not None:
        try:
            champ = score(params, champion)
        except Unloadable as exc:    # registered in an older format (a pickle): serving cannot load it either
            note = f"champion v{champion} cannot be scored ({exc}); compared with no champion"
    # the embeddings have one figure, cold-start ROC-AUC; the others one per context
    names = ("cold_start",) if family == "embeddings" else params.contexts
    result = decide(chal, champ, names, params.registry.max_context_drop)
    if note:
        result.reasons.insert(0, note)
    return result


def decide(chal: np.ndarray, champ: np.ndarray | None, contexts: tuple[str, ...], margin: float) -> GateResult:
    """The gate's rule, on per-context ROC-AUCs: the challenger's macro AUC must not be lower than
    the champion's, and no context may drop by more than ``margin``. No champion: it passes."""
    if champ is None:
        return GateResult(True, ["no champion yet"], float(np.nanmean(chal)), None)
    drops = {c: float(champ[j] - chal[j]) for j, c in enumerate(contexts)
             if np.isfinite(champ[j]) and np.isfinite(chal[j])}
    reasons = []
    if np.nanmean(chal) < np.nanmean(champ):
        reasons.append(f"macro ROC-AUC {np.nanmean(chal):.4f} < champion's {np.nanmean(champ):.4f}")
    reasons += [f"{c}: ROC-AUC down {d:.4f} (> {margin})" for c, d in drops.items() if d > margin]
    return GateResult(not reasons, reasons or ["macro ROC-AUC not worse, no context beyond the margin"],
                      float(np.nanmean(chal)), float(np.nanmean(champ)), drops)


def promote(params: Params, version: str | None = None, why: str = "", force: bool = False,
            family: str = "tagger") -> dict:
    """Move @champion to ``version`` (default: @challenger) if the gate passes, or with ``force``
    (recorded as such). Raises PromotionRefused with the gate's reasons otherwise."""
    client = open_client(params)
    name = model_name(params, family)
    version = version or alias_version(client, name, "challenger")
    if version is None:
        raise PromotionRefused(f"{name} has no @challenger; run `ctxtag register` first")
    champion = alias_version(client, name, "champion")
    if champion == version:
        return {"model": name, "version": version, "promoted": False, "reasons": ["already champion"]}
    from ctxtag.serving.shadow import agreement

    result = gate(params, version, champion, family)
    # beside the test split, what live traffic said (serving.shadow), for the record
    shadow = agreement(client.get_model_version(name, version).tags)
    event = {"version": version, "previous": champion, "why": why, "gate": asdict(result), "shadow": shadow}
    if not result.passed and not force:
        record(client, name, {"action": "promotion_refused", **event})
        raise PromotionRefused(f"{name} v{version} not promoted: " + "; ".join(result.reasons))
    client.set_registered_model_alias(name, "champion", version)
    record(client, name, {"action": "promote" if result.passed else "forced_promote", **event})
    return {"model": name, "version": version, "previous": champion, "promoted": True, "gate": asdict(result)}


def promote_each(params: Params, versions: dict[str, str], why: str = "") -> dict[str, dict]:
    """Each family's version through its own gate: a refusal (recorded in the audit trail, the
    champion left as is) is that family's decision, not the end of the others'."""
    decisions = {}
    for family, version in versions.items():
        try:
            decisions[family] = promote(params, version=version, family=family, why=why)
        except PromotionRefused as exc:
            decisions[family] = {"model": model_name(params, family), "version": version, "promoted": False,
                                 "refused": str(exc)}
    return decisions


def rollback(params: Params, to: str | None = None, why: str = "", family: str = "tagger") -> dict:
    """Point @champion back at ``to`` (default: the champion before the current one)."""
    client = open_client(params)
    name = model_name(params, family)
    current = alias_version(client, name, "champion")
    if to is None:
        moves = [e for e in audit_log(client, name)
                 if e["action"] in ("promote", "forced_promote", "rollback") and e.get("version") == current]
        to = moves[-1].get("previous") if moves else None
        if to is None:
            raise PromotionRefused(f"{name}: no earlier champion to roll back to; name a version")
    client.get_model_version(name, to)                # fails clearly on an unknown version
    client.set_registered_model_alias(name, "champion", to)
    event = record(client, name, {"action": "rollback", "version": to, "previous": current, "why": why})
    return {"model": name, "champion": to, "previous": current, "event": event}
