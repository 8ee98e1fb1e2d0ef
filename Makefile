# kiln's front door. Every target installs what it needs (a project-local
# Python venv for moto, cargo-lambda and zig; a second one for SAM and
# cfn-lint), so a fresh machine needs only Rust, Python 3 and make.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT        := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV        := $(ROOT)/.venv
VENV_INFRA  := $(ROOT)/.venv-sam
VENV_CHECKOV := $(ROOT)/.venv-checkov
PYTHON      ?= python3
FUNCTIONS   := deploy-trigger deploy-exec watchdog alert-forwarder
ENV         ?= dev

# One target directory for every build, test and tool.
export CARGO_TARGET_DIR ?= $(ROOT)/target
# cargo-lambda, zig and moto_server come from the venv; sam build needs the
# venv's python3 (the one with ziglang) first on PATH.
export PATH := $(VENV)/bin:$(PATH)
# The harness finds moto here; tests never use a system-wide install.
export KILN_MOTO_SERVER := $(VENV)/bin/moto_server
# AWS_LC_SYS_NO_JITTER_ENTROPY=1 is set for every cargo command in
# .cargo/config.toml.

TEST_RUNNER := $(shell command -v cargo-nextest >/dev/null 2>&1 && echo "nextest run --no-fail-fast" || echo "test --no-fail-fast")

.PHONY: help
help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# moto alone is what `make run` and `make dev` need; the tests and the
# Lambda build add cargo-lambda and zig.
$(VENV)/.moto-installed: tools/requirements-moto.txt
	@echo "==> Python venv for moto ($(VENV))"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements-moto.txt
	touch $@

$(VENV)/.installed: $(VENV)/.moto-installed tools/requirements-test.txt
	@echo "==> cargo-lambda and zig in the venv ($(VENV))"
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements-test.txt
	touch $@

$(VENV_INFRA)/.installed: tools/requirements-infra.txt
	@echo "==> Python venv for SAM and cfn-lint ($(VENV_INFRA))"
	$(PYTHON) -m venv $(VENV_INFRA)
	$(VENV_INFRA)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements-infra.txt
	touch $@

# checkov pins an older boto3 than aws-sam-cli: a venv of its own.
$(VENV_CHECKOV)/.installed: tools/requirements-checkov.txt
	@echo "==> Python venv for checkov ($(VENV_CHECKOV))"
	$(PYTHON) -m venv $(VENV_CHECKOV)
	$(VENV_CHECKOV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements-checkov.txt
	touch $@

.PHONY: venv
venv: $(VENV)/.installed $(VENV_INFRA)/.installed $(VENV_CHECKOV)/.installed ## Install the project-local Python tools

.PHONY: fmt
fmt: ## Format the code
	cargo fmt --all

.PHONY: lint
lint: cargo-deny ## cargo fmt --check, clippy -D warnings, and the supply-chain policy (deny.toml)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo deny check bans licenses sources

# cargo-deny goes into cargo's bin directory on first use (built once, in
# its own target directory so later installs reuse it).
CARGO_DENY_VERSION := 0.20.2
.PHONY: cargo-deny
cargo-deny:
	@cargo deny --version >/dev/null 2>&1 || { echo "==> installing cargo-deny $(CARGO_DENY_VERSION)"; \
	  CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)/tools cargo install --locked cargo-deny@$(CARGO_DENY_VERSION); }

.PHONY: audit
audit: cargo-deny ## Check dependencies against the RustSec advisories (downloads the database: needs GitHub)
	cargo deny check advisories

# Fuzzing: libFuzzer through cargo-fuzz, without a sanitizer (kiln is safe
# Rust; what is looked for is panics, broken invariants and runaway memory),
# which needs no nightly compiler. The fuzz crate has its own lock file and
# target directory. Crashes land in fuzz/artifacts/<target>/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= webhook_request signature_header github_payload aws_events slack_render
.PHONY: fuzz
fuzz: ## Fuzz each parser and renderer for FUZZ_SECONDS seconds (default 60): make fuzz [FUZZ_TARGETS=...]
	@cargo fuzz --version >/dev/null 2>&1 || { echo "==> installing cargo-fuzz"; \
	  CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)/tools cargo install --locked "cargo-fuzz@^0.13"; }
	fuzz/seed.sh
	@cd fuzz && for t in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$t artifacts/$$t; \
	  echo "==> fuzzing $$t for $(FUZZ_SECONDS) s"; \
	  CARGO_TARGET_DIR=$(ROOT)/fuzz/target cargo fuzz run --sanitizer none --release --codegen-units 16 $$t corpus/$$t seeds/$$t \
	    -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
	    -artifact_prefix=artifacts/$$t/ 2>&1 | grep -a -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|thread .* panicked|Test unit written|Reproduce)' \
	    || { echo "fuzz target $$t failed: see fuzz/artifacts/$$t/"; exit 1; }; \
	done

.PHONY: test
test: lint check-local-build $(VENV)/.installed check-templates ## Everything: lint, unit, integration and end-to-end tests, template checks, check-iam
	@# The function binaries the integration tests run, built with the tests'
	@# own feature resolution so nothing is compiled twice.
	cargo build --workspace --bins --tests
	@# The tests record every AWS call of every function process: a fresh
	@# record, stamped complete only when every test passed.
	rm -rf $(IAM_CALLS)
	cargo $(TEST_RUNNER) --workspace --lib --bins --tests
	mkdir -p $(IAM_CALLS) && touch $(IAM_CALLS)/.complete
	cargo test --workspace --doc
	@$(MAKE) --no-print-directory check-iam

# ---------------------------------------------- least privilege (check-iam)
# The record of calls (tests/src/call_record.rs) and its stamp. It is reused
# while it is newer than everything that decides which calls are made: the
# Rust sources and manifests of the functions, the shared crate and the
# tests. Otherwise check-iam records again by running the integration and
# end-to-end tests.
IAM_CALLS   := $(CARGO_TARGET_DIR)/iam-calls
IAM_SOURCES := Cargo.toml Cargo.lock shared functions tests
IAM_DROP    ?=

.PHONY: check-iam
check-iam: $(VENV)/.installed $(VENV_INFRA)/.installed ## Every recorded AWS call allowed by the templates, every grant used: make check-iam [IAM_DROP=<function>:<action>]
	@if [ ! -f $(IAM_CALLS)/.complete ] || [ -n "$$(find $(IAM_SOURCES) -newer $(IAM_CALLS)/.complete -print -quit)" ]; then \
	  echo "==> recording AWS calls: the integration and end-to-end tests ($(IAM_CALLS))"; \
	  rm -rf $(IAM_CALLS); \
	  cargo build --workspace --bins --tests; \
	  cargo $(TEST_RUNNER) -p kiln-tests --tests; \
	  mkdir -p $(IAM_CALLS) && touch $(IAM_CALLS)/.complete; \
	else echo "==> reusing the record of calls in $(IAM_CALLS) (newer than the sources)"; fi
	$(VENV_INFRA)/bin/python infra/iam/check.py --records $(IAM_CALLS) $(addprefix --drop ,$(IAM_DROP))
	@# The checker's own tests: IAM's rules on small policies, and mutations
	@# of the templates against this record (skipped when IAM_DROP is given).
	$(if $(IAM_DROP),,KILN_CALL_RECORD_DIR=$(IAM_CALLS) $(VENV_INFRA)/bin/python -m pytest infra/iam/tests -q -p no:cacheprovider)

# The Lambda zips: the four function crates and nothing else in the
# invocation, so their features resolve as they ship.
LAMBDA_BUILD := cargo lambda build --release --arm64 --output-format zip $(addprefix -p ,$(FUNCTIONS))

# `make run` and `make dev` run the functions as the zips build them: the
# same crates and features, only the profile (`local`, built for a short
# edit-run loop, in target/local) and the target differ; check-local-build
# fails if that stops being true. kiln-local, the harness that drives them,
# is a second invocation, so its features (test servers, moto clients)
# never reach a function. It finds the function binaries next to itself.
LOCAL_FUNCTIONS_BUILD := cargo build --profile local $(addprefix -p ,$(FUNCTIONS))
LOCAL_HARNESS_BUILD   := cargo build --profile local -p kiln-tests --bin kiln-local

.PHONY: local-build
local-build:
	$(LOCAL_FUNCTIONS_BUILD)
	$(LOCAL_HARNESS_BUILD)

# On a fresh clone the venv (moto only; mostly downloads) is installed
# while cargo builds.
.PHONY: run
run: ## Run kiln locally on an emulated AWS: a scripted demo and a summary (exit 1 if a step fails)
	@$(MAKE) --no-print-directory -j2 $(VENV)/.moto-installed local-build
	$(CARGO_TARGET_DIR)/local/kiln-local run

.PHONY: dev
dev: ## Start kiln locally and leave it running: webhook URL, secret and a signed curl (Ctrl-C stops it)
	@$(MAKE) --no-print-directory -j2 $(VENV)/.moto-installed local-build
	$(CARGO_TARGET_DIR)/local/kiln-local dev

.PHONY: check-local-build
check-local-build: ## Check that make run's function binaries have the Lambda zips' crates and features, and that kiln-local's build reuses them
	tools/check-local-build.sh "$(LAMBDA_BUILD)" "$(LOCAL_FUNCTIONS_BUILD)" "$(LOCAL_HARNESS_BUILD)"

.PHONY: rustup-arm64
rustup-arm64:
	@rustup target list --installed 2>/dev/null | grep -q '^aarch64-unknown-linux-gnu$$' \
	  || rustup target add aarch64-unknown-linux-gnu \
	  || { echo "error: could not install the aarch64-unknown-linux-gnu Rust target (rustup target add aarch64-unknown-linux-gnu); make build needs it" >&2; exit 1; }

.PHONY: build
build: $(VENV)/.installed rustup-arm64 ## Build the four arm64 Lambda zips (target/lambda/<function>/bootstrap.zip)
	$(LAMBDA_BUILD)
	@for f in $(FUNCTIONS); do ls -l $(CARGO_TARGET_DIR)/lambda/$$f/bootstrap.zip; done

# Benchmarks, never part of `make test`: each function's host release binary
# against an empty lambda_runtime function (cold start, warm latency, peak
# RSS), the arm64 zips `make build` wrote, and the criterion hot paths with
# OpenSSL's HMAC as the yardstick. Writes the tables into docs/performance.md
# (between its kiln-bench markers) and the whole report to
# target/bench/performance.md, and exits 1 naming each target missed. The runner is
# optimised (profile bench-runner): it is on the path of every timed call.
# BENCH_ARGS: e.g. --cold 40 --warm 500, --functions watchdog, --no-hotpaths.
BENCH_ARGS ?=
.PHONY: bench
bench: build ## Benchmarks: cold start, warm latency, memory, zip sizes, hot paths (docs/performance.md)
	cargo lambda build --release --arm64 --output-format zip -p bench-baseline
	cargo build --release -p bench-baseline $(addprefix -p ,$(FUNCTIONS))
	cargo build --profile bench-runner -p kiln-bench
	$(CARGO_TARGET_DIR)/bench-runner/kiln-bench --update docs/performance.md $(BENCH_ARGS)

# ------------------------------------------------------- AWS (SAM, infra/)
SAM        := SAM_CLI_TELEMETRY=0 $(VENV_INFRA)/bin/sam
SAM_CONFIG := --config-file samconfig.toml --config-env $(ENV)

.PHONY: check-templates
check-templates: $(VENV_INFRA)/.installed $(VENV_CHECKOV)/.installed ## Template checks: cfn-lint, sam validate --lint, offline transform, checkov, template tests
	tools/check-templates.sh

.PHONY: checkov
checkov: $(VENV_INFRA)/.installed $(VENV_CHECKOV)/.installed ## checkov alone, offline, on the transformed templates (also part of check-templates)
	tools/checkov.sh

.PHONY: sam-build
sam-build: $(VENV)/.installed $(VENV_INFRA)/.installed rustup-arm64 ## sam build: the four functions via cargo-lambda and zig (infra/.aws-sam)
	cd infra && $(SAM) build --template template.yaml

.PHONY: deploy
deploy: sam-build ## Deploy kiln: make deploy ENV=dev|staging|production
	cd infra && $(SAM) deploy $(SAM_CONFIG)

.PHONY: plan
plan: sam-build ## Preview a deploy: a change set listing every nested change, not executed: make plan ENV=...
	cd infra && $(SAM) package $(SAM_CONFIG) --output-template-file .aws-sam/packaged-$(ENV).yaml
	cd infra && $(VENV_INFRA)/bin/python plan.py --env $(ENV) --template .aws-sam/packaged-$(ENV).yaml

.PHONY: outputs
outputs: $(VENV_INFRA)/.installed ## Print the stack outputs (webhook URL, secrets): make outputs ENV=...
	cd infra && $(SAM) list stack-outputs $(SAM_CONFIG) --output table

.PHONY: logs
logs: $(VENV_INFRA)/.installed ## Tail the logs: make logs ENV=... [FN=DeployPipeline/DeployExecFunction]
	cd infra && $(SAM) logs $(SAM_CONFIG) --tail $(if $(FN),--name $(FN))

.PHONY: delete
delete: $(VENV_INFRA)/.installed ## Delete the stack (asks first): make delete ENV=...
	cd infra && $(SAM) delete $(SAM_CONFIG)

.PHONY: clean
clean: ## Remove build output and the venvs
	cargo clean
	rm -rf $(VENV) $(VENV_INFRA) $(VENV_CHECKOV) infra/.aws-sam
