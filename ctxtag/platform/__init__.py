"""Platform services: Feast definitions and store, Great Expectations gates, the MLflow registry and promotion gate, orchestration."""
