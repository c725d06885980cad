#!/bin/sh
# The MLflow backend store and the Feast registry beside Airflow's metadata database (POSTGRES_DB),
# on the same server; the names come from docker/stack.env, as scripts/stack.sh creates them natively.
set -e
for db in "$STACK_MLFLOW_DB" "$STACK_FEAST_DB"; do
  psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -c "CREATE DATABASE $db"
done
