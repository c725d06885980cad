"""The `feast` CLI on this feature repository, its data folder read from params.yaml (paths.feast).

    python feature_repo/feast_cli.py apply
    python feature_repo/feast_cli.py materialize-incremental $(date -u +%FT%T)
    python feature_repo/feast_cli.py serve
    python feature_repo/feast_cli.py --online redis apply        # feature_store.redis.yaml
    python feature_repo/feast_cli.py --params other.yaml apply

The feature_store*.yaml files name the folder as ``${CTXTAG_FEAST_DIR}`` (Feast expands environment
variables there); this script sets it, and CTXTAG_PARAMS for definitions.py, then runs `feast`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent
ROOT = REPO.parent
CONFIGS = {"sqlite": "feature_store.yaml", "redis": "feature_store.redis.yaml"}


def feast_dir(params_file: Path) -> Path:
    """paths.feast of ``params_file``, absolute (relative paths are relative to the project root)."""
    from ctxtag.config import load_params

    return (ROOT / load_params(params_file).paths.feast).resolve()


def command(args: list[str], params_file: Path = ROOT / "params.yaml", online: str = "sqlite",
            environ: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The `feast` command line and environment that run ``args`` on this repository."""
    env = {**(os.environ if environ is None else environ),
           "CTXTAG_FEAST_DIR": str(feast_dir(params_file)), "CTXTAG_PARAMS": str(Path(params_file).resolve())}
    here = Path(sys.executable).parent / "feast"
    feast = str(here) if here.exists() else shutil.which("feast") or "feast"
    return [feast, "-c", str(REPO), "-f", str(REPO / CONFIGS[online]), *args], env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--online", choices=sorted(CONFIGS), default="sqlite")
    parser.add_argument("feast_args", nargs=argparse.REMAINDER, help="arguments of the feast CLI")
    ns = parser.parse_args(argv)
    cmd, env = command(ns.feast_args, ns.params, ns.online)
    Path(env["CTXTAG_FEAST_DIR"]).mkdir(parents=True, exist_ok=True)
    os.execvpe(cmd[0], cmd, env)


if __name__ == "__main__":
    main()
