# wsmon: `make run` serves, `make test` runs everything. Both bootstrap what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
HOST ?= 127.0.0.1
PORT ?= 8080
# Debian packages the integration tests start for real: promtool/prometheus, alertmanager/amtool;
# chromium renders the load test's HTML report; redis-server is the broker between instances.
DEBIAN_TOOLS := prometheus prometheus-alertmanager chromium redis-server
TOOL_BINARIES := promtool prometheus prometheus-alertmanager amtool chromium redis-server

.PHONY: run test test-oldest lint tools venv clean help bench soak loadtest rules dashboards deploy stack stack-stop

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "wsmon needs Python 3.11 or newer; set PYTHON=python3.x")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)  ## create .venv and install wsmon with its development tools

tools:  ## install the Debian tools the integration tests run (needs root or sudo)
	@missing=""; for b in $(TOOL_BINARIES); do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(DEBIAN_TOOLS) >/dev/null; \
	fi

# Development: no tokens checked (the server says so at start and every minute); production
# sets auth_jwt_secret_file (README, Authentication).
run: $(STAMP)  ## serve on $(HOST):$(PORT) without authentication (Ctrl-C drains and stops)
	$(BIN)/wsmon serve --host $(HOST) --port $(PORT) --no-auth

test: $(STAMP) tools  ## run the whole test suite
	$(BIN)/python -P -m pytest -q

# ruff reads each file once: it does not follow wsmon/'s symlinks to the top-level folders.
PY_SOURCES := wsmon exporter alerting loadgen dashboards deploy tests
lint: $(STAMP)  ## ruff, mypy (strict) and import-linter's dependency contracts
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/mypy -p wsmon
	$(BIN)/lint-imports

# Generated files are checked in (reviewers see the PromQL a threshold change makes); the test
# suite rebuilds them and fails when they are stale, so run this after editing alerting/.
rules: $(STAMP) tools  ## alerting/thresholds.yaml -> alerting/generated/ (rules, promtool tests, Alertmanager), checked
	$(BIN)/wsmon rules build --thresholds alerting/thresholds.yaml --output alerting/generated
	promtool check rules alerting/generated/rules.yaml
	promtool test rules alerting/tests/*.yaml alerting/generated/alerts_test.yaml
	amtool check-config alerting/generated/alertmanager.yml

# The same thresholds file as `make rules`: a threshold line on a panel is the value its alert
# fires at. Checked in too; the test suite fails when they are stale.
dashboards: $(STAMP)  ## alerting/thresholds.yaml + dashboards/*.jsonnet -> dashboards/generated/ (Grafana JSON)
	$(BIN)/wsmon dashboards build --thresholds alerting/thresholds.yaml --output dashboards/generated

# The bundle copies the rules, the Alertmanager config and the dashboards, rendered from the same
# thresholds file; checked in too, and the test suite fails when it is stale.
deploy: $(STAMP) tools  ## alerting/ + dashboards/ + deploy/bundle.jsonnet -> deploy/ (Prometheus, Alertmanager, Grafana, systemd, Compose, Kubernetes), checked
	$(BIN)/wsmon deploy build --thresholds alerting/thresholds.yaml --output deploy
	promtool check config deploy/prometheus/prometheus.yml
	amtool check-config deploy/alertmanager/alertmanager.yml

# The bundle on this machine, on 127.0.0.1: state (Prometheus' 30 days, logs, mails) in .stack/.
stack: $(STAMP) tools  ## start wsmon, Prometheus (30 d), Alertmanager, a mail sink (and grafana-server if installed); prints the URLs (ARGS="--instances 2": two servers and a redis-server)
	$(BIN)/wsmon stack start --state-dir .stack $(ARGS)

stack-stop: $(STAMP)  ## stop exactly the processes `make stack` started
	$(BIN)/wsmon stack stop --state-dir .stack

# The floors in pyproject.toml are claims: install the lowest versions they allow (uv's
# lowest-direct resolution of the runtime dependencies and extras), then today's test tools held
# to those pins, and run the unit tests there.
OLDEST := .venv-oldest
test-oldest: $(STAMP)  ## unit tests on the lowest dependency versions pyproject.toml allows
	rm -rf $(OLDEST) && $(BIN)/uv venv --quiet --python $(PYTHON) $(OLDEST)
	$(BIN)/uv pip compile --quiet --resolution lowest-direct --python $(OLDEST)/bin/python \
	  --extra loadtest --extra alerting --extra stack --output-file $(OLDEST)/pins.txt pyproject.toml
	$(BIN)/uv pip install --quiet --python $(OLDEST)/bin/python -r $(OLDEST)/pins.txt
	$(BIN)/uv pip install --quiet --python $(OLDEST)/bin/python --no-deps -e .
	$(BIN)/uv pip install --quiet --python $(OLDEST)/bin/python -c $(OLDEST)/pins.txt \
	  pytest pytest-aiohttp pytest-timeout hypothesis kubernetes-validate playwright
	@# Only its vendored Compose schema is read (no import), so its own pins (ruamel.yaml newer
	@# than wsmon's floor) do not matter.
	$(BIN)/uv pip install --quiet --python $(OLDEST)/bin/python --no-deps check-jsonschema
	@echo "lowest allowed: $$(grep -v '^ *#' $(OLDEST)/pins.txt | tr '\n' ' ')"
	$(OLDEST)/bin/python -P -m pytest -q -m "not integration"

clean:  ## remove the virtual environments and caches
	rm -rf $(VENV) $(OLDEST) .pytest_cache .mypy_cache .ruff_cache

PROFILE ?= light
loadtest: $(STAMP)  ## load-test ws://$(HOST):$(PORT)/ws, starting a server if none answers (PROFILE=heavy ARGS=...)
	$(BIN)/wsmon loadtest $(PROFILE) --url ws://$(HOST):$(PORT)/ws --start-server $(ARGS)

bench: $(STAMP)  ## measure wsmon beside bare aiohttp and websockets (about 16 min; not part of test)
	$(BIN)/python -P -m wsmon.loadgen.bench $(ARGS)

# docs/soak.md: what it checks; reports/soak-<date>.md has the figures; exit status 1 on a FAIL.
soak: $(STAMP)  ## extreme profile + churn + bad input: memory, descriptors, counters (10 min; not part of test)
	$(BIN)/python -P -m wsmon.loadgen.bench.soak $(ARGS)
