# emr-chatops — the targets the README names.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo demo-targets test check lint typecheck deploy-check bench prices account-a-policy docs clean

# A virtualenv with the pinned requirements; rebuilt when they change.
$(BIN)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

## demo: the bot on the built-in local demo (AWS emulator + Text console)
demo: $(BIN)/.installed
	$(BIN)/python -m demo

## demo-targets: the same with two targets, two accounts and two regions (demo/targets.toml, DESIGN §17)
demo-targets: $(BIN)/.installed
	$(BIN)/python -m demo --targets

## test: the whole test suite (offline)
test: $(BIN)/.installed
	$(BIN)/python -m pytest -q -n 4 --dist worksteal

## lint / typecheck: ruff and mypy (strict on the pure rules and the cross-account session)
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

## deploy-check: cfn-lint on the CloudFormation templates, parliament on every shipped IAM policy, systemd-analyze on the unit
deploy-check: $(BIN)/.installed
	PATH=$(CURDIR)/$(BIN):$$PATH bash deploy/check.sh

## check: everything CI runs
check: lint typecheck deploy-check test

## bench: the benchmarks quoted in docs/contributing.md (Performance)
bench: $(BIN)/.installed
	$(BIN)/python -m bench

## prices: write a PRICES_FILE from AWS's Price List (the bot's own identity; docs/operator-guide.md, Prices), by default of the
## shipped table's regions and types: make prices PRICES_OUT=/etc/emr-chatops/prices.json PRICES_ARGS="--region ap-northeast-1"
PRICES_OUT ?= data/prices.json
prices: $(BIN)/.installed
	mkdir -p $(dir $(PRICES_OUT))
	PYTHONPATH=plugins/emr $(BIN)/python -m emrchatops.aws.prices --out $(PRICES_OUT) $(PRICES_ARGS)

## account-a-policy: account A's IAM policy (the bot's identity may assume every target's role) from a TARGETS_FILE:
## make account-a-policy TARGETS_FILE=/etc/emr-chatops/targets.toml POLICY_OUT=account-a.json
POLICY_OUT ?=
account-a-policy: $(BIN)/.installed
	@test -n "$(TARGETS_FILE)" || { echo "usage: make account-a-policy TARGETS_FILE=path/to/targets.toml [POLICY_OUT=account-a.json]" >&2; exit 2; }
	$(BIN)/python -m deploy.account_a_policy $(TARGETS_FILE) $(if $(POLICY_OUT),--out $(POLICY_OUT))

## docs: write docs/configuration.md from the settings' reference (plugins/emr/emrchatops/domain/reference.py)
docs: $(BIN)/.installed
	PYTHONPATH=plugins/emr $(BIN)/python -m emrchatops.domain.reference

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis data
