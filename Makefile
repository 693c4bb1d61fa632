# Garrison's build. Everything the tests need is fetched by these targets
# through the Go module proxy; nothing else must be installed by hand.

GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X main.version=$(VERSION)
CONFIG      ?= deploy/examples/bookinfo
DATA_DIR    ?= .data
FUZZTIME    ?= 10s
BENCHTIME   ?= 1s
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOFILES      = $(shell find . -name '*.go' -not -path './vendor/*' -not -path './.data/*')

.PHONY: build run test lint fuzz bench peers conformance clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/garrison ./cmd/garrison

## run: serve the embedded default (the bookinfo example) from a directory of YAML.
run: build
	./bin/garrison serve --config $(CONFIG) --data-dir $(DATA_DIR)

## test: linters, then every test with the race detector.
test: lint
	$(GO) test -race -count=1 ./...

lint:
	@bad=$$(gofmt -l $(GOFILES)); if [ -n "$$bad" ]; then echo "gofmt needed:"; echo "$$bad"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## fuzz: run every fuzz target for FUZZTIME each.
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' .); do \
		dir=$$(dirname $$f); \
		for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "== $$dir $$t"; \
			$(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$(FUZZTIME) $$dir; \
		done; \
	done

## bench: every Go benchmark, never part of the default test run.
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) ./...

## bench-load: cmd/garrison-bench against `garrison serve` at BENCH_POLICIES policies, and
## against opa-envoy-plugin with the same policies compiled to a bundle when bin/opa-envoy-plugin
## exists (make peers): throughput, p50/p99 latency, server CPU per Check, Garrison/peer ratios.
## Never part of the default test run. BENCH_FLAGS adds flags (garrison-bench -h), e.g. -bare.
BENCH_POLICIES ?= 10,1000,10000
BENCH_DURATION ?= 10s
BENCH_FLAGS    ?=
bench-load: build
	$(GO) build -o bin/garrison-bench ./cmd/garrison-bench
	./bin/garrison-bench -garrison bin/garrison -opa-envoy-plugin bin/opa-envoy-plugin \
		-policies $(BENCH_POLICIES) -d $(BENCH_DURATION) $(BENCH_FLAGS)

## peers: build the independent implementations Garrison is compared with
## (conformance/peers, a module of its own): bin/opa-envoy-plugin.
peers:
	cd conformance/peers && $(GO) build -o ../../bin/opa-envoy-plugin github.com/open-policy-agent/opa-envoy-plugin/cmd/opa-envoy-plugin

## conformance: both conformance suites over the wire: authorization (conformance/authz)
## against a real garrison serve per topic, and the CA (conformance/ca) against one
## garrison serve with its CA, directly and through the external command contract.
## IMPL='<command with {config} and {addr}>' runs the authorization suite against that
## ext_authz implementation instead; CA_IMPL='<command with {addr} {roots} {tokens}>'
## (CA_REVOKE='<command with {serial}>', CA_KNOWN=ca/known_failures/<impl>.yaml) runs
## the CA suite against that implementation of Istio's CA API instead.
IMPL     ?=
CA_IMPL  ?=
CA_REVOKE ?=
CA_KNOWN ?=
conformance:
ifeq ($(strip $(IMPL)$(CA_IMPL)),)
	$(GO) test -count=1 -run 'TestWire|TestKnownFailuresNameCases|TestCAWire|TestCACommand|TestCAKnownFailures' ./conformance
endif
ifneq ($(strip $(IMPL)),)
	AUTHZ_CONFORMANCE_IMPL='$(IMPL)' $(GO) test -count=1 -run TestExternal ./conformance
endif
ifneq ($(strip $(CA_IMPL)),)
	CA_CONFORMANCE_IMPL='$(CA_IMPL)' CA_CONFORMANCE_REVOKE='$(CA_REVOKE)' $(GO) test -count=1 -run TestCAExternal ./conformance -args -ca-known='$(CA_KNOWN)'
endif

clean:
	rm -rf bin $(DATA_DIR)
