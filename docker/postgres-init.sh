#!/bin/sh
# The MLflow backend store beside Airflow's metadata database (POSTGRES_DB), on the same server;
# the names come from docker/stack.env, as scripts/stack.sh creates them natively.
set -e
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -c "CREATE DATABASE $STACK_MLFLOW_DB"
