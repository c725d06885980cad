"""Shared plumbing of every bounded context: table I/O, quarantine and input errors, plots, progress, early stopping, MLflow tracking."""
