"""Pipeline stages: file I/O around the pure functions, one module per `ctxtag` subcommand.

The CLI, `dvc repro` (dvc.yaml runs the CLI) and the Airflow DAGs all call these functions.
"""
