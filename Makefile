# Every target creates .venv and installs what it needs, so a fresh clone needs nothing else.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench-trainer kafka-up kafka-down clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/metasignal demo

lint: $(STAMP)
	$(BIN)/ruff check trainer stream tests bench
	$(BIN)/ruff format --check trainer stream tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

bench-trainer: $(VENV)/.bench-installed
	$(BIN)/python -m bench.trainer --out docs/benchmarks.md

# A real single-node Kafka (KRaft) on 127.0.0.1:9092 from Maven Central jars; no Docker needed.
kafka-up:
	deploy/kafka/local-kafka.sh start

kafka-down:
	deploy/kafka/local-kafka.sh stop

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
