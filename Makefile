# Everyday commands. `make test` is what CI runs (through .ci/run): it installs
# what the tests need when it is missing, then runs every test.

GO ?= go
GO_TEST_FLAGS ?= -count=1 -timeout 30m

# Packages with concurrency, tested under the race detector.
RACE_PACKAGES ?= ./cas/... ./encryption/... ./orgs/... ./server/...

# Debian packages the tests need, listed only when missing: Bazel 4.2.3 for the
# e2e builds and Chromium for the settings page tests.
APT_PACKAGES := $(if $(shell command -v bazel),,bazel-bootstrap) \
                $(if $(wildcard /usr/bin/chromium),,chromium)
APT_PACKAGES := $(strip $(APT_PACKAGES))
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: all build test deps vet race bench clean

all: build

build:
	$(GO) build -o bin/sealcache ./cmd/sealcache

test: deps
	$(GO) test $(GO_TEST_FLAGS) ./...

# apt-get update runs only when something must be installed.
deps:
ifneq ($(APT_PACKAGES),)
	$(SUDO) apt-get update -q
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PACKAGES)
endif
	$(GO) mod download

vet:
	$(GO) vet ./...

race:
	$(GO) test -race $(GO_TEST_FLAGS) $(RACE_PACKAGES)

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin/
