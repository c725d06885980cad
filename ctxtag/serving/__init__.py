"""Online serving: the HTTP API, the service behind it, the MLflow pyfunc, nearest-neighbour search."""
