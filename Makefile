# `make run` and `make test` work on a fresh clone: each creates or updates .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BUF := npx --yes @bufbuild/buf@1.75.0

.PHONY: run test check lint protos bench system-packages

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

## run: the gateway and the feedback sidecar, SQLite, .eml files in ./outbox instead of SES; Ctrl-C stops both.
## Unless set, MAILGW_ADMIN_ALLOW_UNAUTHENTICATED=true when no tokens, client CA or admin callers are set, so that
## `mailgw contacts` and `mailgw dispatch` work against it (the gateway allows that on a loopback address only)
run: $(BIN)/.installed
	@MAILGW_TRANSPORT=$${MAILGW_TRANSPORT:-outbox} \
	MAILGW_DEFAULT_FROM="$${MAILGW_DEFAULT_FROM:-Mail Gateway <noreply@example.com>}" \
	MAILGW_ADMIN_ALLOW_UNAUTHENTICATED=$${MAILGW_ADMIN_ALLOW_UNAUTHENTICATED-$$(test -n \
	  "$$MAILGW_AUTH_TOKENS$$MAILGW_AUTH_TOKENS_FILE$$MAILGW_TLS_CLIENT_CA$$MAILGW_ADMIN_CALLERS" || echo true)} \
	$(BIN)/mailgw run

## test: lint (buf, ruff, the order of layers), then the whole suite on several workers (pytest-xdist: each its own
## PostgreSQL database at 127.0.0.1:5432, ports and files); the browser, Node and Go tests included
test: $(BIN)/.installed node_modules/.package-lock.json system-packages lint
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadgroup --max-worker-restart=0

## check: the fast tier, every test that starts no process, browser or other language's toolchain (pytest -m slow
## is the rest): what to run after each change
check: $(BIN)/.installed
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-check} $(BIN)/python -m pytest -m "not slow" -n $(WORKERS) --dist loadgroup --max-worker-restart=0 -q

# Workers: the tests mostly wait (on the database, loopback servers, child processes), so one more than the cores.
# --max-worker-restart=0: a worker that dies fails the run naming its test; pytest-xdist 3.8's loadgroup hangs when
# it replaces a crashed worker (pytest-dev/pytest-xdist#1323, #1327).
WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))

## system-packages: the Debian packages the tests need (Go and its gRPC libraries, Chromium), installed when missing
system-packages:
	.ci/system-packages

## lint: buf lint, ruff, and the order of layers (import-linter's contracts in pyproject.toml, ARCHITECTURE.md)
lint: $(BIN)/.installed
	$(BUF) lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

## protos: regenerate gateway/api/ from protos/
protos: $(BIN)/.installed
	$(BIN)/python -m gateway.api

## clients: regenerate the Node (clients/node/gen) and Go (clients/go) code from protos/ with buf.gen.yaml's local
## plugins: protoc-gen-es from node_modules, protoc-gen-go and protoc-gen-go-grpc from Debian (see .ci/run)
.PHONY: clients breaking
clients: node_modules/.package-lock.json
	rm -rf clients/node/gen clients/go/mailgateway
	$(BUF) generate

## breaking: buf breaking, protos/ against the previous commit (BUF_BREAKING_AGAINST=origin/main on a branch)
breaking:
	.ci/buf-breaking

# npm ci leaves node_modules/.package-lock.json: the Node client's packages and buf's ES plugin, as locked
node_modules/.package-lock.json: package-lock.json
	npm ci --no-audit --no-fund

## bench: every benchmark line against its baseline; prints the table, writes bench/results/latest.json
bench: $(BIN)/.installed
	$(BIN)/python -m bench
