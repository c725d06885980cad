#!/usr/bin/env bash
# Re-resolve requirements.lock from pyproject.toml (maintainers only; bootstrap.sh only syncs).
# torch is pinned without its local "+cpu" label so the same line gives PyPI's build (CUDA on a
# GPU worker) elsewhere, and machine-specific --find-links lines are not committed.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
fl=()
for d in $(python3 -m pip config list 2>/dev/null | sed -n "s/^global.find-links='\(.*\)'/\1/p"); do fl+=(--find-links "$d"); done
# its pins are kept where they still fit (uv prefers an output file's), but torch's: the local CPU
# build (find-links) must win over PyPI's CUDA one
grep -v '^torch==' requirements.lock > requirements.lock.tmp 2>/dev/null || true
"$UV" pip compile pyproject.toml --extra dev --python-version 3.11 --no-header "${fl[@]}" -o requirements.lock.tmp
sed -E -e '/^--find-links/d' -e 's/^torch==([0-9.]+)\+cpu/torch==\1/' requirements.lock.tmp > requirements.lock
rm requirements.lock.tmp
echo "requirements.lock: $(grep -c '==' requirements.lock) pins"
