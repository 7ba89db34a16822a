# sbcwatch — build, test, demo, bench, lint.
GO        ?= go
BIN       ?= bin/sbcwatch
CAPTURES  ?= $(abspath ../shared/captures)
SAMPLE    ?= testdata/lab/transfer_fails_default_cert.pcap
SAMPLECFG ?= testdata/lab/sbcwatch.yaml
# A count, not a duration: with a duration, Go's fuzz coordinator can report
# "context deadline exceeded" as a failure when the clock runs out mid-run.
FUZZTIME  ?= 20000x
export SBCWATCH_CAPTURES ?= $(CAPTURES)
# The browser tests keep their screenshots here (git-ignored).
export SBCWATCH_ARTIFACTS ?= $(abspath artifacts)
# Go stamps vcs.revision and vcs.time from git itself; these -ldflags
# values are the fallback `sbcwatch version` prints when a build has no
# VCS information (a source tarball, a Docker context without .git).
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE      ?= $(shell git log -1 --format=%cI 2>/dev/null)
LDFLAGS   ?= -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)

.PHONY: build test unit fuzz-short demo bench lint lab deps vulncheck

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/sbcwatch

## test: everything CI runs — dependencies (when root), vet, unit and
## integration tests, short fuzz runs.
test: deps build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	$(MAKE) fuzz-short
	$(MAKE) vulncheck

## vulncheck: govulncheck ./... (pinned in scripts/vulncheck.sh); says so
## and passes when vuln.go.dev cannot be reached (VULNCHECK_REQUIRED=1: fails).
vulncheck:
	GO=$(GO) bash scripts/vulncheck.sh

unit:
	$(GO) test -count=1 -short ./...

# Every fuzz target gets a short bounded run (the corpus in testdata/fuzz
# is replayed by plain `go test` as well).
fuzz-short:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$t"; \
	    out=$$($(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg 2>&1) || { echo "$$out" | tail -40; exit 1; }; \
	  done; \
	done

## demo: the main job on the bundled sample capture (no database needed).
demo: build
	$(BIN) analyze --config $(SAMPLECFG) $(SAMPLE)

## bench: Go benchmarks (allocations per SIP message), then every figure
## of BENCHMARKS.md in one run (about 7 minutes; appends to BENCHMARKS.md).
bench:
	$(GO) test -run '^$$' -bench 'ParseDatagram|Tracker|ParseTrunk' -benchmem ./sip/
	$(GO) test -run '^$$' -bench . -benchmem ./analyze/
	bash scripts/bench.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if command -v redocly >/dev/null; then REDOCLY_TELEMETRY=off redocly lint --config api/redocly.yaml api/openapi.json; else echo "lint: redocly not installed (scripts/deps.sh); skipping the OpenAPI lint"; fi

lab:
	sudo -n true 2>/dev/null || [ "$$(id -u)" = 0 ]
	bash lab/run.sh

deps:
	@if [ "$$(id -u)" = 0 ]; then bash scripts/deps.sh; else echo "deps: not root, skipping installs (tests whose tools are missing will say so)"; fi
