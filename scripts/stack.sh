#!/usr/bin/env bash
# The production topology as native processes on this machine (`make stack-up|stack-check|stack-down`):
#   PostgreSQL (metadata of Airflow and MLflow, the Feast registry), RabbitMQ (Celery broker), Redis
#   (Feast's online store)
#   — the machine's own services —, and, started here: a local S3 (moto's server), the MLflow
#   tracking server (Postgres backend, artifacts proxied to S3), Airflow 3 on CeleryExecutor
#   (api-server, scheduler, dag-processor, triggerer, a worker on the default queue and one on the
#   `gpu` queue) and the serving API (several workers), all on 127.0.0.1.
# Settings: docker/stack.env (the same file docker/compose.yaml reads). State: $STACK_HOME (.stack/):
#   project/ the deployment (a snapshot of this checkout, its own git history and DVC remote on S3),
#   airflow/, logs/, run/ (pid files).
#   scripts/stack.sh up | check | down | status | env
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$ROOT/.venv/bin:$PATH"
while IFS='=' read -r key value; do                  # the settings; the environment wins
  [[ "$key" =~ ^STACK_[A-Z0-9_]+$ ]] || continue
  [ -n "${!key+x}" ] || export "$key=$value"
done < "$ROOT/docker/stack.env"
export STACK_HOME=${STACK_HOME:-$ROOT/.stack}
STACK_HOME=$(mkdir -p "$STACK_HOME" && cd "$STACK_HOME" && pwd)
PROJECT=$STACK_HOME/project
H=127.0.0.1
PG="postgresql+psycopg2://${STACK_PG_USER}@$H:$STACK_PG_PORT"     # trust on 127.0.0.1, as the machine is set up
DATABASES="$STACK_AIRFLOW_DB $STACK_MLFLOW_DB $STACK_FEAST_DB"   # one per component, created when absent

stack_env() {                                         # what every component of the stack sees
  export CTXTAG_PROJECT=$PROJECT
  export AIRFLOW_HOME=$STACK_HOME/airflow
  export AIRFLOW__CORE__EXECUTOR=CeleryExecutor
  export AIRFLOW__CORE__DAGS_FOLDER=$PROJECT/dags
  export AIRFLOW__CORE__LOAD_EXAMPLES=False
  export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False   # production: the schedules run from the start
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=$PG/$STACK_AIRFLOW_DB
  export AIRFLOW__CELERY__BROKER_URL="amqp://$STACK_RABBITMQ_USER:$STACK_RABBITMQ_PASSWORD@$H:$STACK_RABBITMQ_PORT/$STACK_RABBITMQ_VHOST"
  export AIRFLOW__CELERY__RESULT_BACKEND="db+$PG/$STACK_AIRFLOW_DB"
  export AIRFLOW__API__HOST=$H AIRFLOW__API__PORT=$STACK_AIRFLOW_PORT
  export AIRFLOW__API__BASE_URL="http://$H:$STACK_AIRFLOW_PORT"
  export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://$H:$STACK_AIRFLOW_PORT/execution/"
  export AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=$STACK_WORKER_LOG_PORT
  export AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT=$STACK_HEARTBEAT_TIMEOUT_S
  export AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT=$STACK_QUEUED_TIMEOUT_S
  export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="$STACK_AIRFLOW_USER:admin"
  export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=$STACK_HOME/airflow/passwords.json
  export AIRFLOW__API_AUTH__JWT_SECRET=$(cat "$STACK_HOME/secret" 2>/dev/null || true)
  export AIRFLOW__API__SECRET_KEY=$AIRFLOW__API_AUTH__JWT_SECRET
  export MLFLOW_TRACKING_URI="http://$H:$STACK_MLFLOW_PORT"
  export AWS_ENDPOINT_URL="http://$H:$STACK_S3_PORT" MLFLOW_S3_ENDPOINT_URL="http://$H:$STACK_S3_PORT"
  export AWS_ACCESS_KEY_ID=$STACK_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$STACK_S3_SECRET_KEY
  export AWS_DEFAULT_REGION=$STACK_S3_REGION
  export CTXTAG_DROPS_SOURCE="s3://$STACK_DROPS_BUCKET/$STACK_DROPS_PREFIX"
  export CTXTAG_ONLINE_STORE=redis CTXTAG_REDIS_URL="$H:$STACK_REDIS_PORT"
  export CTXTAG_FEAST_REGISTRY=$PG/$STACK_FEAST_DB          # one registry for every reader of the store
  export CTXTAG_COMMIT_LOCK=1                         # the deployment's dvc.lock goes to its git history
}

running() { [ -f "$STACK_HOME/run/$1.pid" ] && kill -0 "$(cat "$STACK_HOME/run/$1.pid")" 2>/dev/null; }

start() {                                             # start NAME DIR CMD...: detached, its own process group
  local name=$1 dir=$2; shift 2
  if running "$name"; then
    echo "  $name: already running"; return
  fi
  (cd "$dir" && exec setsid "$@" >> "$STACK_HOME/logs/$name.log" 2>&1 < /dev/null) &
  echo $! > "$STACK_HOME/run/$name.pid"
  echo "  $name: pid $! (log: $STACK_HOME/logs/$name.log)"
}

supervised() {                                        # supervised NAME DIR CMD...: started again when it dies
  # as systemd's Restart=always or a container's restart policy would: a worker killed with its
  # tasks, or one that found the broker down as it started, is back 5 s later
  local name=$1 dir=$2; shift 2
  start "$name" "$dir" bash -c 'while :; do "$@"; echo "[stack] $1 exited ($?): restarting in 5 s" >&2; sleep 5; done' \
    supervise "$@"
}

wait_for() {                                          # wait_for WHAT SECONDS CMD...
  local what=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "stack: $what not ready after ${seconds}s; see $STACK_HOME/logs/" >&2; return 1
    fi
    sleep 1
  done
}

http_ok() { python - "$1" <<'EOF'
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=3).read()
EOF
}

databases() {
  for db in $DATABASES; do
    if ! psql -h $H -p "$STACK_PG_PORT" -U "$STACK_PG_USER" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1; then
      psql -h $H -p "$STACK_PG_PORT" -U "$STACK_PG_USER" -d postgres -qc "CREATE DATABASE $db" && echo "  postgres: created $db"
    fi
  done
  if ! rabbitmqctl -q list_vhosts 2>/dev/null | grep -qx "$STACK_RABBITMQ_VHOST"; then
    rabbitmqctl -q add_vhost "$STACK_RABBITMQ_VHOST" && echo "  rabbitmq: created vhost $STACK_RABBITMQ_VHOST"
    rabbitmqctl -q set_permissions -p "$STACK_RABBITMQ_VHOST" "$STACK_RABBITMQ_USER" ".*" ".*" ".*"
  fi
}

deploy() {                                            # the deployment: this checkout's files, once
  if [ -d "$PROJECT/.git" ]; then echo "  project: $PROJECT (kept)"; return; fi
  mkdir -p "$PROJECT"
  (cd "$ROOT" && git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
     [ -e "$f" ] && printf '%s\0' "$f"; done | xargs -0 cp --parents -t "$PROJECT")   # tracked files deleted here: not
  cd "$PROJECT"
  # the small world (params.small.yaml over params.yaml): the whole pipeline in minutes
  python "$ROOT/scripts/params_overrides.py" --merge params.small.yaml params.yaml
  git init -q && git config user.name "ctxtag stack" && git config user.email "stack@ctxtag.invalid"
  dvc remote add -q --local -d stack "s3://$STACK_DVC_BUCKET/project"
  dvc remote modify -q --local stack endpointurl "$AWS_ENDPOINT_URL"
  dvc remote modify -q --local stack access_key_id "$STACK_S3_ACCESS_KEY"
  dvc remote modify -q --local stack secret_access_key "$STACK_S3_SECRET_KEY"
  # the demo world stands in for the catalogue, audio and history a deployment starts from: rendered
  # once, then frozen, so no run of the pipeline can re-render (overwrite) it
  # (`dvc freeze` cannot rewrite a stage with ${...} in it: the flag is written in its place)
  dvc repro -q synth
  sed -i 's/^  synth:$/  synth:\n    frozen: true             # the deployment'"'"'s world: rendered once (scripts\/stack.sh)/' dvc.yaml
  grep -q "frozen: true" dvc.yaml
  git add -A && git commit -qm "ctxtag deployment from $(git -C "$ROOT" rev-parse --short HEAD) (world rendered, synth frozen)"
  echo "  project: $PROJECT (deployed; the world rendered and frozen)"
  cd "$ROOT"
}

up() {
  mkdir -p "$STACK_HOME"/{logs,run,airflow,s3}
  [ -s "$STACK_HOME/secret" ] || python -c "import secrets; print(secrets.token_hex(32))" > "$STACK_HOME/secret"
  stack_env
  echo "stack: services of this machine"
  wait_for postgres 30 pg_isready -h $H -p "$STACK_PG_PORT"
  wait_for redis 30 redis-cli -h $H -p "$STACK_REDIS_PORT" ping
  databases
  echo "stack: S3"
  # moto keeps its objects in memory: every request that changes one is recorded to disk and the
  # recording replayed at the next start (scripts/s3_server.py), so a stack-down/up keeps the
  # remote, the artifacts and the drops
  if ! running s3; then
    MOTO_RECORDER_FILEPATH=$STACK_HOME/s3/recording start s3 "$STACK_HOME/s3" python "$ROOT/scripts/s3_server.py" \
      -H $H -p "$STACK_S3_PORT"
    wait_for s3 60 http_ok "http://$H:$STACK_S3_PORT/moto-api/"
    if [ -s "$STACK_HOME/s3/recording" ]; then
      curl -sf -X POST "http://$H:$STACK_S3_PORT/moto-api/recorder/replay-recording" > /dev/null
      echo "  s3: replayed $(wc -l < "$STACK_HOME/s3/recording") recorded requests"
    fi
    curl -sf -X POST "http://$H:$STACK_S3_PORT/moto-api/recorder/start-recording" > /dev/null
  fi
  python - <<'EOF'
import os, boto3
s3 = boto3.client("s3")
have = {b["Name"] for b in s3.list_buckets()["Buckets"]}
for name in (os.environ["STACK_DROPS_BUCKET"], os.environ["STACK_DVC_BUCKET"], os.environ["STACK_MLFLOW_BUCKET"]):
    if name not in have:
        s3.create_bucket(Bucket=name)
EOF
  echo "stack: MLflow"
  supervised mlflow "$STACK_HOME" mlflow server --host $H --port "$STACK_MLFLOW_PORT" --workers "$STACK_MLFLOW_WORKERS" \
    --backend-store-uri "$PG/$STACK_MLFLOW_DB" --artifacts-destination "s3://$STACK_MLFLOW_BUCKET" --serve-artifacts
  wait_for mlflow 120 http_ok "$MLFLOW_TRACKING_URI/health"
  deploy
  echo "stack: Airflow (CeleryExecutor)"
  [ -f "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" ] || \
    python -c "import json, secrets, sys; print(json.dumps({sys.argv[1]: secrets.token_urlsafe(12)}))" \
      "$STACK_AIRFLOW_USER" > "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
  airflow db migrate > "$STACK_HOME/logs/airflow-migrate.log" 2>&1
  airflow pools set gpu "$STACK_GPU_SLOTS" "GPU workers (training tasks)" > /dev/null
  supervised airflow-api "$PROJECT" airflow api-server --port "$STACK_AIRFLOW_PORT"
  supervised airflow-scheduler "$PROJECT" airflow scheduler
  supervised airflow-dag-processor "$PROJECT" airflow dag-processor
  supervised airflow-triggerer "$PROJECT" airflow triggerer
  CTXTAG_WORKER_NAME=cpu-worker supervised airflow-worker "$PROJECT" airflow celery worker --queues default \
    --concurrency "$STACK_CPU_CONCURRENCY" --celery-hostname "cpu@%h"
  # the GPU worker: the `gpu` queue (training); CUDA where present, the CPU here. Its logs are on the
  # same disk, served (for the UI's live view) by the first worker's log server, which Airflow binds
  # to every interface (hard-coded) and which answers only requests signed with the stack's secret
  CTXTAG_WORKER_NAME=gpu-worker supervised airflow-gpu-worker "$PROJECT" airflow celery worker --queues gpu \
    --concurrency "$STACK_GPU_CONCURRENCY" --celery-hostname "gpu@%h" --skip-serve-logs
  wait_for airflow 180 http_ok "http://$H:$STACK_AIRFLOW_PORT/api/v2/monitor/health"
  echo "stack: the API"
  supervised api "$PROJECT" ctxtag serve --port "$STACK_API_PORT" --workers "$STACK_API_WORKERS"
  wait_for api 120 http_ok "http://$H:$STACK_API_PORT/health"
  echo "stack: up. Airflow http://$H:$STACK_AIRFLOW_PORT (user $STACK_AIRFLOW_USER, password in" \
       "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE), MLflow $MLFLOW_TRACKING_URI," \
       "API http://$H:$STACK_API_PORT, S3 $AWS_ENDPOINT_URL"
}

down() {
  local names=(api airflow-gpu-worker airflow-worker airflow-triggerer airflow-dag-processor airflow-scheduler
               airflow-api mlflow s3)
  for name in "${names[@]}"; do
    local pidfile="$STACK_HOME/run/$name.pid"
    [ -f "$pidfile" ] || continue
    local pid; pid=$(cat "$pidfile")
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for name in "${names[@]}"; do
    local pidfile="$STACK_HOME/run/$name.pid"
    [ -f "$pidfile" ] || continue
    local pid; pid=$(cat "$pidfile")
    for _ in $(seq 1 30); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
  echo "stack: down (state kept in $STACK_HOME; remove it and the databases with STACK_PURGE=1)"
  if [ "${STACK_PURGE:-0}" = 1 ]; then
    for db in $DATABASES; do
      psql -h $H -p "$STACK_PG_PORT" -U "$STACK_PG_USER" -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
    done
    rabbitmqctl -q delete_vhost "$STACK_RABBITMQ_VHOST" 2>/dev/null || true
    rm -rf "$STACK_HOME"
    echo "stack: purged"
  fi
}

status() {
  for f in "$STACK_HOME"/run/*.pid; do
    [ -f "$f" ] || continue
    local name; name=$(basename "$f" .pid)
    if kill -0 "$(cat "$f")" 2>/dev/null; then echo "$name: up (pid $(cat "$f"))"; else echo "$name: DOWN"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  check) stack_env; shift; exec python "$ROOT/scripts/stack_check.py" "$@" ;;
  env) stack_env; export -p | grep -E ' (AIRFLOW|MLFLOW|AWS|CTXTAG|STACK)_' ;;
  *) echo "usage: $0 up|check|down|status|env" >&2; exit 2 ;;
esac
