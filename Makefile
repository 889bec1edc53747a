# Ferry: `make demo` runs the whole thing on loopback; `make test` runs every test.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
BIN       := bin
STATICCHECK_VERSION := v0.8.2

.PHONY: all build test test-race test-postgres test-long fuzz lint e2e tui-test inspect-ui demo bench bench-short bench-frp clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ferry ./agent/cmd/ferry
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ferry-relay ./relay/cmd/ferry-relay

# The whole suite: race-checked unit and in-process end-to-end tests, the long
# transfers without the race detector (1 GiB by hash), a short run of every fuzz
# target, and the scripts/e2e.sh run against the built binaries.
test: test-race test-postgres test-long fuzz e2e tui-test inspect-ui

# The store's suite again against a real PostgreSQL (Debian's package, installed if
# missing when root), started on loopback for the run and removed after.
test-postgres:
	@d=$$(mktemp -d); dsn=$$(bash scripts/postgres.sh start $$d) || exit 1; \
	FERRY_TEST_POSTGRES=$$dsn $(GO) test -race -count=1 -run 'Postgres' ./relay/store/...; rc=$$?; \
	bash scripts/postgres.sh stop $$d >/dev/null; rm -rf $$d; exit $$rc

test-race:
	$(GO) test -race -count=1 -timeout 20m ./...

test-long:
	FERRY_LONG=1 $(GO) test -count=1 -timeout 20m -run 'Long' ./...

# Execution counts, not durations: Go 1.26's fuzz coordinator can end a duration-bound
# run with a spurious "context deadline exceeded" when its workers are starved
# (golang/go#75804), which made CI flaky. A count only slows down on a busy machine.
FUZZTIME ?= 200000x
FUZZMINIMIZETIME ?= 1000x
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $$pkg; \
	  done; \
	done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

e2e: build
	bash scripts/e2e.sh

tui-test: build
	bash scripts/tui-test.sh

# Drives the inspection page in headless Chromium (installs Debian's chromium and the
# npm packages it needs when missing).
inspect-ui: build
	bash scripts/inspect-ui/test.sh

# A built binary, not `go run`: go run exits 1 on Ctrl-C even when the demo ends cleanly.
demo: build
	$(GO) build -o $(BIN)/demo ./scripts/demo
	@$(BIN)/demo

bench: build
	$(GO) run ./scripts/bench

# A short benchmark run: proves the harness works (CI), figures are not meaningful.
bench-short: build
	$(GO) run ./scripts/bench --short

# The full run with frp (built from source through the Go module proxy, cached) measured
# beside ferry in the same table, over frp's tcp and quic transports.
bench-frp: build
	bash scripts/bench/peer-frp.sh build
	$(GO) run ./scripts/bench --peer 'frp-tcp=bash scripts/bench/peer-frp.sh tcp' --peer 'frp-quic=bash scripts/bench/peer-frp.sh quic'

clean:
	rm -rf $(BIN) .demo
