"""dvc.yaml's code deps are the subpackage directories each stage runs, and DVC sees them change.

A stage ``<name>`` runs ``ctxtag/stages/<name>.py``; the modules it runs are that module's
``ctxtag.*`` imports, followed transitively (read with ``ast``, so nothing is imported). A stage
depends on the whole directory of every subpackage it runs, plus ctxtag/config.py, ctxtag/cli.py
(every `cmd` is a `ctxtag` subcommand), ctxtag/vocabulary.py, ctxtag/common and its own stage module.

The DVC test never runs the pipeline: in a scratch copy of the project every data dependency and
output is an empty placeholder, ``dvc commit --force`` records a lock of that state, then one module
is edited and ``dvc status`` must mark exactly the stages that run that module's subpackage (and
nothing else: bytecode caches written after the lock must be ignored). DVC runs in-process
(``dvc.repo.Repo``, what the CLI calls) to save the start-up of a `dvc` process per status.
"""

from __future__ import annotations

import ast
import shutil
from contextlib import chdir
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PKG = "ctxtag"
ALWAYS = {"ctxtag/config.py", "ctxtag/cli.py", "ctxtag/vocabulary.py", "ctxtag/common"}   # cli: every cmd


# --- what each stage runs, from the imports ---------------------------------------------------

def _module_file(module: str, root: Path = ROOT) -> Path | None:
    path = root.joinpath(*module.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


@cache
def _imports(module: str) -> frozenset[str]:
    """The ctxtag modules (and their parent packages, which run first) that ``module`` imports."""
    file = _module_file(module)
    package = module.split(".") if file.name == "__init__.py" else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:                                   # relative: from . import x, from ..a import b
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)   # `from pkg import module`
    found = set()
    for name in names:
        parts = name.split(".")
        if parts[0] != PKG or _module_file(name) is None:
            continue                                         # third party, or an attribute import
        found.update(".".join(parts[:i]) for i in range(2, len(parts) + 1)
                     if _module_file(".".join(parts[:i])) is not None)
    return frozenset(found)


def runs(module: str) -> set[str]:
    """``module`` and every ctxtag module it imports, transitively."""
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(_imports(m))
    return seen


def code_deps(stage: str) -> set[str]:
    """The code deps dvc.yaml should list for ``stage`` (``train@none`` -> ctxtag/stages/train.py)."""
    name = stage.split("@")[0]
    deps = ALWAYS | {f"ctxtag/stages/{name}.py"}
    for module in runs(f"ctxtag.stages.{name}"):
        parts = module.split(".")
        if len(parts) == 2:                                  # ctxtag/config.py, ctxtag/cli.py, ...
            if _module_file(module).name != "__init__.py":
                deps.add(f"ctxtag/{parts[1]}.py")
        elif parts[1] == "stages":                           # a stage module run by another stage
            deps.add(f"ctxtag/stages/{parts[2]}.py")
        else:
            deps.add(f"ctxtag/{parts[1]}")
    return deps


def _yaml_stages() -> dict[str, dict]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: s.get("do", s) for name, s in stages.items()}


def _listed_code_deps(stage: dict) -> set[str]:
    return {d for d in (next(iter(d)) if isinstance(d, dict) else d for d in stage.get("deps", []))
            if d.startswith(f"{PKG}/")}


def test_every_stage_lists_the_subpackages_it_imports():
    wrong = {}
    for name, stage in _yaml_stages().items():
        assert stage["cmd"].split()[:2] == ["scripts/ctxtag", name.replace("_", "-")], name
        assert (ROOT / f"ctxtag/stages/{name}.py").is_file(), f"{name}: no ctxtag/stages/{name}.py"
        listed, wanted = _listed_code_deps(stage), code_deps(name)
        if listed != wanted:
            wrong[name] = {"missing": sorted(wanted - listed), "not imported": sorted(listed - wanted)}
    assert not wrong, f"dvc.yaml code deps differ from the stages' imports: {wrong}"


def test_the_import_walk_sees_through_packages_and_stage_modules():
    assert "ctxtag.labelling.matcher" in runs("ctxtag.stages.label")      # via playlists / labels
    assert "ctxtag.config" in runs("ctxtag.stages.synth")
    assert code_deps("train@none") >= {"ctxtag/tagger", "ctxtag/stages/train.py", *ALWAYS}
    assert not any(d.startswith("ctxtag/labelling") for d in code_deps("ingest_logs"))


# --- DVC: editing a module marks exactly the stages that run it --------------------------------

def _changed_code(project: Path) -> dict[str, set[str]]:
    """``dvc status``: stage -> the deps it reports changed (a changed output fails the test)."""
    from dvc.repo import Repo

    with chdir(project), Repo(str(project)) as repo:      # targets resolve against the cwd
        status = repo.status()
    changed: dict[str, set[str]] = {}
    for stage, entries in status.items():
        for entry in entries:
            assert set(entry) == {"changed deps"}, (stage, entry)
            changed.setdefault(stage, set()).update(entry["changed deps"])
    return changed


@pytest.fixture(scope="module")
def locked_project(tmp_path_factory) -> tuple[Path, list[str]]:
    """A scratch copy of the project whose lock records empty placeholders for every data path,
    with bytecode caches written after the lock (``.dvcignore`` must keep them out)."""
    from dvc.repo import Repo

    project = tmp_path_factory.mktemp("dvc_code_deps")
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / PKG, project / PKG, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    Repo.init(str(project), no_scm=True).close()
    with Repo(str(project)) as repo:                       # dvc.yaml with ${...} resolved
        stages = list(repo.index.stages)
        names = [s.name for s in stages]
        data = {str(o.def_path) for s in stages for o in (*s.deps, *s.outs)} - {"params.yaml"}
    data = {p for p in data if not p.startswith(f"{PKG}/")}
    for rel in sorted(data):                               # a path with others inside it is a folder
        path = project / rel
        if any(q.startswith(f"{rel}/") for q in data) or not path.suffix:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rel)
    for rel in data:
        if (project / rel).is_dir() and not any((project / rel).iterdir()):
            (project / rel / "placeholder").write_text(rel)
    with chdir(project), Repo(str(project)) as repo:      # `dvc commit --force`: the lock
        repo.commit(force=True)
    for pyc in ("common/__pycache__/io.cpython-311.pyc", "labelling/__pycache__/matcher.cpython-311.pyc",
                "audio/melspec.pyc"):
        (project / PKG / pyc).parent.mkdir(exist_ok=True)
        (project / PKG / pyc).write_bytes(b"\0" * 16)
    return project, names


@pytest.mark.parametrize("edited", ["ctxtag/labelling/matcher.py", "ctxtag/audio/melspec.py",
                                    "ctxtag/config.py"])
def test_editing_a_module_marks_exactly_the_stages_that_run_it(locked_project, edited):
    project, names = locked_project
    assert {"label", "features", "validate", "embedding_features", "user_models"} <= set(names)
    module = edited.removesuffix(".py").replace("/", ".")
    # a subpackage's folder is one dependency; a top-level module or a stage module is a file
    unit = module if len(module.split(".")) == 2 else ".".join(module.split(".")[:2])
    dep = edited if unit == module else unit.replace(".", "/")
    expected = {n for n in names if any(m == unit or m.startswith(f"{unit}.")
                                        for m in runs(f"ctxtag.stages.{n.split('@')[0]}"))}
    if edited == "ctxtag/config.py":
        assert expected == set(names)                       # every stage reads its Params
    if edited == "ctxtag/labelling/matcher.py":
        assert "label" in expected and "train@none" not in expected
    if edited == "ctxtag/audio/melspec.py":
        assert {"features", "embedding_features", "track_features", "train@none"} <= expected
        assert "label" not in expected

    path = project / edited
    original = path.read_bytes()
    path.write_bytes(original + b"\n# edited by test_dvc_code_deps\n")
    try:
        changed = _changed_code(project)
    finally:
        path.write_bytes(original)
    assert changed == {n: {dep} for n in expected}
