"""The `feast` CLI on the served feature store for any params file (its ``paths.online``):

    python feature_repo/feast_cli.py serve                        # = cd feature_repo && feast serve
    python feature_repo/feast_cli.py --online redis serve         # the Redis online store
    python feature_repo/feast_cli.py --params other.yaml feature-services list
    python feature_repo/feast_cli.py --online redis --redis-url HOST:PORT \
        --registry postgresql+psycopg2://user@host:5432/db serve     # the production stack's store

With the default params, feature_repo/feature_store*.yaml already name the store (only Feast is
needed); this script writes the same configuration for another data folder into a temporary file.
Commands that write the registry or the online store (apply, teardown, materialize*) are refused:
`ctxtag publish` writes them, from the registry's champions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent
ROOT = REPO.parent
CONFIGS = {"sqlite": "feature_store.yaml", "redis": "feature_store.redis.yaml"}
WRITES = {"apply", "teardown", "materialize", "materialize-incremental"}


def config(params_file: Path, online: str = "sqlite", redis_url: str | None = None, registry: str | None = None) -> dict:
    """The feature_store*.yaml of this repository with the registry and online store of
    ``params_file``'s paths.online (absolute; relative paths are relative to the project root),
    or the shared SQL ``registry`` and the Redis at ``redis_url`` that `ctxtag publish` was given."""
    served = yaml.safe_load(Path(params_file).read_text()).get("paths", {}).get("online", "data/online")
    folder = (ROOT / served).resolve()
    cfg = yaml.safe_load((REPO / CONFIGS[online]).read_text())
    cfg["registry"] = str(folder / Path(cfg["registry"]).name)
    if registry:
        from ctxtag.platform.feature_store import sql_registry

        cfg["registry"] = sql_registry(registry)
    if online == "sqlite":
        cfg["online_store"]["path"] = str(folder / "online.db")
    elif redis_url:
        cfg["online_store"]["connection_string"] = redis_url
    return cfg


def command(args: list[str], config_file: Path) -> list[str]:
    """The `feast` command line running ``args`` on this repository with ``config_file``."""
    if WRITES & set(args):
        raise SystemExit(f"feast {' '.join(args)}: the registry and online store are written by `ctxtag publish` "
                         "(from the registry's champions); run that")
    here = Path(sys.executable).parent / "feast"
    feast = str(here) if here.exists() else shutil.which("feast") or "feast"
    return [feast, "-c", str(REPO), "-f", str(config_file), *args]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--online", choices=sorted(CONFIGS), default=os.environ.get("CTXTAG_ONLINE_STORE", "sqlite"))
    parser.add_argument("--redis-url", default=os.environ.get("CTXTAG_REDIS_URL"))
    parser.add_argument("--registry", metavar="URL", default=os.environ.get("CTXTAG_FEAST_REGISTRY") or None,
                        help="the shared SQL registry `ctxtag publish` writes (default $CTXTAG_FEAST_REGISTRY)")
    parser.add_argument("feast_args", nargs=argparse.REMAINDER, help="arguments of the feast CLI")
    ns = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "feature_store.yaml"
        cfg.write_text(yaml.safe_dump(config(ns.params, ns.online, ns.redis_url, ns.registry)))
        env = {**os.environ, "CTXTAG_PARAMS": str(ns.params.resolve())}
        return subprocess.call(command(ns.feast_args, cfg), env=env)


if __name__ == "__main__":
    sys.exit(main())
