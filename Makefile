# qinfra build. Tools are pinned and installed into .bin/ so a fresh machine
# and CI build with the same versions.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/.bin
export PATH := $(BIN):$(PATH)
export BUF_CACHE_DIR ?= $(CURDIR)/.cache/buf

BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
STATICCHECK_VERSION := v0.8.2

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/quantumlayer/qinfra/pkg/version.Version=$(VERSION)

# Packages whose tests exercise goroutines talking to each other run under
# the race detector.
RACE_PKGS := ./server/... ./agent/... ./pkg/...

.PHONY: all build cross tools proto proto-check lint test test-go demo clean fmt

all: build

build:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -tags grpcnotrace -ldflags '$(LDFLAGS)' -o bin/qinfra-agent ./agent/cmd/qinfra-agent
	CGO_ENABLED=0 $(GO) build -trimpath -tags grpcnotrace -ldflags '$(LDFLAGS)' -o bin/qinfra-server ./server/cmd/qinfra-server
	CGO_ENABLED=0 $(GO) build -trimpath -tags grpcnotrace -ldflags '$(LDFLAGS)' -o bin/qinfractl ./cmd/qinfractl

cross: build
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -tags grpcnotrace -ldflags '$(LDFLAGS)' -o bin/linux-amd64/qinfra-agent ./agent/cmd/qinfra-agent
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -tags grpcnotrace -ldflags '$(LDFLAGS)' -o bin/linux-arm64/qinfra-agent ./agent/cmd/qinfra-agent
	CGO_ENABLED=0 GOOS=windows GOARCH=amd64 $(GO) build -trimpath -tags grpcnotrace -ldflags '$(LDFLAGS)' -o bin/windows-amd64/qinfra-agent.exe ./agent/cmd/qinfra-agent

$(BIN)/buf:
	GOBIN=$(BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(BIN)/protoc-gen-go-grpc:
	GOBIN=$(BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
$(BIN)/staticcheck:
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(BIN)/staticcheck

proto: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc
	buf lint
	rm -rf proto/gen
	buf generate

# proto-check regenerates into a scratch copy and fails when the committed
# generated code differs from it.
proto-check: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	buf generate --template buf.gen.yaml -o $$tmp && \
	if ! diff -r $$tmp/proto/gen proto/gen >/dev/null; then \
		echo "proto/gen is stale: run 'make proto' and commit the result"; diff -r $$tmp/proto/gen proto/gen | head -20; exit 1; fi
	@echo "proto/gen is up to date"

fmt:
	gofmt -w $$(git ls-files '*.go' | grep -v '^proto/gen/')

lint: tools
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^proto/gen/')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	staticcheck ./...
	buf lint
	GOOS=windows $(GO) vet ./agent/...

test-go:
	$(GO) test -race -count=1 $(RACE_PKGS)
	$(GO) test -count=1 $$($(GO) list ./... | grep -v -e /server/ -e /agent/ -e /pkg/)

test: lint proto-check cross test-go

demo: build
	./scripts/demo.sh

clean:
	rm -rf bin .cache

# bench-store: full inventories/s and deltas/s for bbolt and PostgreSQL on
# this machine (PostgreSQL on 127.0.0.1:5432, or QINFRA_TEST_POSTGRES).
.PHONY: bench-store
bench-store:
	$(GO) test -run='^$$' -bench='ApplyFull|ApplyDelta' -benchtime=2s -count=1 ./server/internal/store/bboltstore/ ./server/internal/store/pgstore/

# fuzz runs every fuzz target for FUZZTIME each.
FUZZTIME ?= 20s
.PHONY: fuzz
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f"; $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg; \
		done; \
	done

# bench-agent measures the agent's footprint on this machine (scan time,
# RSS, idle CPU) and writes bench/agent.json.
.PHONY: bench-agent
bench-agent:
	./scripts/bench-agent.sh

.PHONY: bench-vuln
bench-vuln:
	./scripts/bench-vuln.sh

# bench: simulated agents against one server per store (bbolt, PostgreSQL):
# connected agents, RSS per idle agent, enrollments/s, full inventories/s,
# deltas/s, ack, fan-out and drift latency. Writes bench/results.json and
# bench/results.md. Bigger runs: QINFRA_BENCH_AGENTS=19000 QINFRA_BENCH_RAMP=1
# (see scripts/bench.sh for every knob).
.PHONY: bench
bench:
	./scripts/bench.sh

# bench-drift: 10,000 simulated hosts from 5 images with ~50 differences
# each, stored in bbolt. EngineBaselineEdit is the server's path: an edit of
# each image's baseline re-checks its hosts (target: all five under 2 s,
# recheck-s) and inventory-% compares the inventory buckets with one row per
# host×item (target: under 5%). DriftRecompute is the whole-host
# evaluation and write, items in memory; EvaluateHost one host's.
# PGInventoryStorage is the same fleet's storage in PostgreSQL (skipped
# without the test server at 127.0.0.1:5432).
.PHONY: bench-drift
bench-drift:
	$(GO) test -run='^$$' -bench='EngineBaselineEdit|DriftRecompute|EvaluateHost' -benchtime=3x -count=1 -timeout=20m ./server/internal/drift/
	$(GO) test -run='^$$' -bench='PGInventoryStorage' -benchtime=1x -count=1 -timeout=20m ./server/internal/drift/
