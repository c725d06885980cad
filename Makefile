# The two commands of the README: `make demo` and `make test`. Both set everything up first.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup demo reproduce test test-fast lint bench serve airflow stack-up stack-check stack-down clean

setup: $(VENV)/.synced

$(VENV)/.synced: requirements.lock pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh
	touch $@

demo: setup  ## run the whole pipeline (dvc repro) on the generated world, embedded defaults
	dvc repro
	ctxtag release --why "make demo" || [ $$? -eq 3 ]   # 3: a gate refused; that champion stays
	ctxtag summary

reproduce: setup  ## the papers' settings on a larger world (params.reproduce.yaml), as a DVC experiment
	dvc exp run -n reproduce $$(python scripts/params_overrides.py params.reproduce.yaml)
	ctxtag release --why "make reproduce" || [ $$? -eq 3 ]
	ctxtag summary

# pytest-xdist workers, a test file each at a time; the pipeline project is built once for all
# of them (tests/conftest.py: dvc_project)
TEST_WORKERS ?= 2
XDIST = -n $(TEST_WORKERS) --dist loadfile

test: setup  ## lint, then the test suite (services it needs are started by the tests)
	ruff check .
	python -m pytest $(XDIST)

test-fast: setup  ## the fast lane: lint, then the tests not marked slow (no end-to-end pipeline run)
	ruff check .
	python -m pytest $(XDIST) -m "not slow" -q

lint: setup
	ruff check .

bench: setup  ## speed figures (see benchmarks/README.md)
	python benchmarks/bench_weights.py
	python benchmarks/bench_split.py
	python benchmarks/bench_train_throughput.py
	python benchmarks/bench_online_lookup.py
	python benchmarks/bench_dag_parse.py
	python benchmarks/bench_api.py
	python benchmarks/bench_recommend.py
	python benchmarks/bench_embeddings.py
	python benchmarks/bench_ann.py
	python benchmarks/bench_publish.py

serve: setup  ## the HTTP API on http://127.0.0.1:8000 (OpenAPI at /docs), after `make demo`
	ctxtag serve

airflow: setup  ## the Airflow UI on http://127.0.0.1:8080 with the ctxtag DAGs (airflow standalone)
	bash scripts/airflow_standalone.sh

# the production topology as native processes (scripts/stack.sh; settings: docker/stack.env)
stack-up: setup  ## Postgres, RabbitMQ, Redis (this machine's) + S3, MLflow server, Airflow on Celery, the API
	bash scripts/stack.sh up

stack-check: setup  ## a day's drop through both DAGs on the stack, checked end to end (after stack-up)
	bash scripts/stack.sh check

stack-down:  ## stop the stack's processes (STACK_PURGE=1: also its databases and .stack/)
	bash scripts/stack.sh down

clean:
	rm -rf data reports .dvc/cache .dvc/tmp
