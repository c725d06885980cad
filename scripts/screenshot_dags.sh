#!/usr/bin/env bash
# docs/<dag>_graph.png: `airflow standalone` (scripts/airflow_standalone.sh) on a spare port and a
# throwaway AIRFLOW_HOME, then headless Chromium on each DAG's graph view. Needs node + npm.
#   scripts/screenshot_dags.sh                                   the graphs, from a throwaway Airflow
#   AIRFLOW_TOKEN=... scripts/screenshot_dags.sh URL DAG=RUN...  runs of a running Airflow (the stack's:
#                                                                docs/<dag>_run.png, by `make stack-check`)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
port=${PORT:-8093}
trap 'kill -- -$(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
(cd "$work" && npm init -y >/dev/null && npm install --silent @sparticuz/chromium@147 puppeteer-core@24 >/dev/null)
cp scripts/screenshot_dags.mjs "$work/"
mkdir -p docs
if [ $# -gt 0 ]; then
  node "$work/screenshot_dags.mjs" "$1" "$PWD/docs" "${@:2}"
  exit
fi
AIRFLOW_HOME="$work/airflow" AIRFLOW_PORT=$port AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True \
  setsid bash scripts/airflow_standalone.sh >"$work/standalone.log" 2>&1 & echo $! >"$work/pid"
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$port/api/v2/monitor/health" | grep -q '"dag_processor":{"status":"healthy"' && break
  sleep 2
done
sleep 10                                                   # the DAG processor's first pass
node "$work/screenshot_dags.mjs" "http://127.0.0.1:$port" "$PWD/docs" ctxtag_ingest ctxtag_retrain
