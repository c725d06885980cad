#!/usr/bin/env bash
# Create .venv from the committed lock on a fresh machine (idempotent, seconds when up to date).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
UV_VERSION=0.13.9
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/uv --version 2>/dev/null | grep -q "$UV_VERSION"; then
  .venv/bin/python -m pip install -q "uv==$UV_VERSION"
fi
# uv does not read pip's configuration: hand it the local wheel folders pip knows about
# (on these machines they hold the CPU build of torch==2.13.0, which satisfies the lock's pin).
fl=()
for d in $(python3 -m pip config list 2>/dev/null | sed -n "s/^global.find-links='\(.*\)'/\1/p"); do
  [ -d "$d" ] && fl+=(--find-links "$d")
done
export UV_COMPILE_BYTECODE=${UV_COMPILE_BYTECODE:-1}
.venv/bin/uv pip sync --python .venv/bin/python "${fl[@]}" requirements.lock
.venv/bin/uv pip install --python .venv/bin/python --no-deps -e .
.venv/bin/python -c "import ctxtag, torch; print('ctxtag', ctxtag.__version__, '| torch', torch.__version__)"
