# Everyday commands. `make test` is what CI runs (through .ci/run): it installs
# what the tests need when it is missing, then runs every test.

GO ?= go
GO_TEST_FLAGS ?= -count=1 -timeout 30m

# Packages with concurrency, tested under the race detector.
RACE_PACKAGES ?= ./cas/... ./encryption/... ./internal/... ./orgs/... ./server/...

# Debian packages the tests need, listed only when missing: Bazel 4.2.3 for the
# e2e builds, Chromium for the settings page tests, ccache (4.7) as a second
# HTTP cache client, and PostgreSQL for the metadata store and shared object
# index tests (internal/pgtest starts it).
APT_PACKAGES := $(if $(shell command -v bazel),,bazel-bootstrap) \
                $(if $(wildcard /usr/bin/chromium),,chromium) \
                $(if $(shell command -v ccache),,ccache) \
                $(if $(wildcard /usr/lib/postgresql/*/bin/postgres),,postgresql)
APT_PACKAGES := $(strip $(APT_PACKAGES))
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: all build test deps tools vet race bench bench-go clean run

all: build

build:
	$(GO) build -o bin/sealcache ./cmd/sealcache

test: deps
	$(GO) test $(GO_TEST_FLAGS) ./...

# apt-get update runs only when something must be installed.
deps: tools
ifneq ($(APT_PACKAGES),)
	$(SUDO) apt-get update -q
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PACKAGES)
endif
	$(GO) mod download

vet:
	$(GO) vet ./...

race:
	$(GO) test -race $(GO_TEST_FLAGS) $(RACE_PACKAGES)

# Issue 12's targets as a table: builds the binary, starts a server on
# 127.0.0.1 with a temporary data dir, makes a CMEK org with a local key and
# runs `sealcache bench` against it and the plain org. Variables (see
# server/bench/run.sh): BENCH_DIR=/dev/shm (tmpfs: CPU-bound figures),
# BENCH_ARGS="--runs 5", DROP_CACHES=1, OLD_SEALCACHE=path (baseline column).
bench: build
	SEALCACHE=bin/sealcache ./server/bench/run.sh

# Every Go benchmark (go test -bench), each package on its own.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Run the server with its embedded defaults (data in ./sealcache-data).
run:
	$(GO) run ./cmd/sealcache

clean:
	rm -rf bin/

# --- proto: regenerate the admin API's Go code (proto/sealcache/admin/v1) ---
# Tools come from the Go module proxy at pinned versions and live in
# .tools/proto, so `make proto` gives the same output on every machine.
# protoc-gen-go matches google.golang.org/protobuf and protoc-gen-connect-go
# matches connectrpc.com/connect in go.mod.
BUF_VERSION            ?= v1.75.0
PROTOC_GEN_GO_VERSION  ?= v1.36.12
PROTOC_GEN_CONNECT_GO_VERSION ?= v1.21.1
PROTO_TOOLS := $(CURDIR)/.tools/proto

.PHONY: proto proto-tools
proto-tools:
	GOBIN=$(PROTO_TOOLS) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	GOBIN=$(PROTO_TOOLS) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(PROTO_TOOLS) go install connectrpc.com/connect/cmd/protoc-gen-connect-go@$(PROTOC_GEN_CONNECT_GO_VERSION)

proto: proto-tools
	cd proto && PATH="$(PROTO_TOOLS):$$PATH" buf generate


# --- tools: programs the tests start, pinned, in .tools/bin ---
# versitygw is the S3-compatible server the cas/s3 tests run against
# (internal/s3test finds it here). It is built from the Go module proxy at a
# pinned version; the stamp file makes a version change reinstall it.
VERSITYGW_VERSION ?= v1.8.0
TOOLS_BIN := $(CURDIR)/.tools/bin
VERSITYGW_STAMP := $(CURDIR)/.tools/versitygw-$(VERSITYGW_VERSION).installed

tools: $(VERSITYGW_STAMP)

$(VERSITYGW_STAMP):
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)
	touch $@
