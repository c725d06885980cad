#!/usr/bin/env bash
# The Airflow UI on 127.0.0.1:8080 with the ctxtag DAGs loaded (`make airflow`).
# Embedded default: `airflow standalone` (api-server, scheduler, dag-processor, triggerer,
# LocalExecutor, SQLite) in .airflow/; the admin password is printed and kept in
# .airflow/simple_auth_manager_passwords.json.generated.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$PWD/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$PWD/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT="${AIRFLOW_PORT:-8080}"
# the workers reach the api-server on the same port (else every task fails: Connection refused to :8080)
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:${AIRFLOW__API__PORT}/execution/"
export CTXTAG_PROJECT="$PWD"
mkdir -p "$AIRFLOW_HOME"
airflow db migrate >/dev/null
# the training tasks' pool; on a CeleryExecutor cluster its slots = the number of GPUs
airflow pools set gpu "${CTXTAG_GPU_SLOTS:-1}" "GPU workers (training tasks)" >/dev/null
exec airflow standalone
