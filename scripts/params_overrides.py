"""Print `-S key=value` for every leaf of a params overlay (e.g. params.reproduce.yaml), the
arguments `dvc exp run` takes to run the pipeline with those values over params.yaml."""

import json
import shlex
import sys

import yaml


def leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def main(path: str) -> None:
    with open(path, encoding="utf-8") as fh:
        overlay = yaml.safe_load(fh) or {}
    # JSON spells lists and null the way DVC's override parser (Hydra's grammar) reads them
    args = [f"-S {shlex.quote(f'{key}={json.dumps(value)}')}" for key, value in leaves(overlay)]
    print(" ".join(args))


if __name__ == "__main__":
    main(sys.argv[1])
