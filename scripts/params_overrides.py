"""Print `-S key=value` for every leaf of a params overlay (e.g. params.reproduce.yaml), the
arguments `dvc exp run` takes to run the pipeline with those values over params.yaml; or, with
`--merge OVERLAY PARAMS`, write the overlay's values into PARAMS (the stack's deployment)."""

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


def merge(overlay_path: str, params_path: str) -> None:
    with open(overlay_path, encoding="utf-8") as fh:
        overlay = yaml.safe_load(fh) or {}
    with open(params_path, encoding="utf-8") as fh:
        params = yaml.safe_load(fh)
    for key, value in leaves(overlay):
        *parents, leaf = key.split(".")
        node = params
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    with open(params_path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(params, fh, sort_keys=False)


if __name__ == "__main__":
    if sys.argv[1] == "--merge":
        merge(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1])
