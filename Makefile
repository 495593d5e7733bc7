# Build, test and CI entry points. CI runs `make test` through .ci/run with
# ANYGUARD_E2E=require, so the end-to-end tests (e2e/) cannot pass by
# skipping.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

GO          ?= go
FUZZTIME    ?= 30s
# Fuzzing beyond the seed corpora in `make test`: every target for this long.
TESTFUZZTIME ?= 3s
TESTTIMEOUT ?= 30m
TESTFLAGS   ?=
# staticcheck 2025.1.1 is published as module version v0.6.1: the module
# proxy does not resolve the calendar tag @2025.1.1.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.6.1
# Packages whose tests also run under the race detector in `make test`:
# the packet parser, the lock-free router snapshot, the devices and ports
# (netstack and the handshake reader included), the gossip and
# ownership code, the gateway and its parts, the health server and config
# (about a minute on 2 cores; bench and the demo's command are left out:
# they spend their time in child processes and timed phases).
RACE_PKGS   ?= ./packet/ ./router/ ./device/... ./cluster/ ./health/ ./internal/config/ ./internal/gateway/...
# Packages with Go micro-benchmarks.
BENCH_PKGS  ?= $(patsubst %,./%/,$(wildcard router device))
# anyguard bench throughput: length of each iperf3 run, repetitions of
# everything, and the bound on further repetitions of a ratio to stock that
# is still too wide to call.
BENCH_DURATION ?= 10s
BENCH_REPS     ?= 5
BENCH_MAX_REPS ?= 11
# The file whose <!-- bench:NAME:begin/end --> markers make bench rewrites.
BENCH_DOC      ?= docs/benchmarks.md

# Tools the end-to-end tests run, and the Debian packages that bring them.
# The fault suite (e2e/faults*_test.go) adds nft and conntrack; the drop-in
# tests (e2e/dropin*_test.go) setpriv and iptables; the container tests
# nsenter; the monitoring test promtool (package prometheus); the AMI tests
# (e2e/ami_test.go, e2e/images_test.go) mmdebstrap, shellcheck, packer,
# cloud-init and systemd-analyze (package systemd).
E2E_TOOLS    := wg wg-quick wireguard-go iperf3 ip ping chromium unshare setpriv nsenter podman runc nft conntrack \
                iptables promtool mmdebstrap shellcheck packer cloud-init systemd-analyze
E2E_PACKAGES := wireguard-tools wireguard-go iperf3 iproute2 iputils-ping chromium util-linux podman runc nftables conntrack \
                iptables prometheus mmdebstrap shellcheck packer cloud-init systemd

# ip lives in /usr/sbin, which a non-login PATH may lack.
export PATH := $(PATH):/usr/sbin:/sbin

# Version and revision, set in the binary by -ldflags (anyguard version,
# anyguard_build_info) and in the image's OCI labels.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE   ?= https://github.com/anyguard/anyguard
LDFLAGS  := -X main.version=$(VERSION) -X main.revision=$(REVISION)
# make image: podman if installed, else docker; the tag it builds.
CONTAINER_TOOL ?= $(shell command -v podman 2>/dev/null || command -v docker 2>/dev/null)
IMAGE          ?= localhost/anyguard:latest

.PHONY: all build image test deps fuzz bench lint clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/anyguard ./cmd/anyguard

# The container image (images/Dockerfile) around a stripped static binary,
# built in a context holding only that binary; prints the image's size and
# fails when it exceeds IMAGE_MAX_BYTES (as podman image inspect counts,
# unpacked). The binary is built with -tags nodev: the developer commands
# (bench, demo) stay out of the image (docs/container.md).
IMAGE_MAX_BYTES ?= 20000000
image:
	@if [ -z "$(CONTAINER_TOOL)" ]; then echo "image: neither podman nor docker is installed"; exit 1; fi
	rm -rf bin/image && mkdir -p bin/image/bin bin/image/rootfs/var/run/wireguard bin/image/rootfs/var/lib/anyguard
	CGO_ENABLED=0 $(GO) build -tags nodev -trimpath -ldflags '-s -w $(LDFLAGS)' -o bin/image/bin/anyguard ./cmd/anyguard
	$(CONTAINER_TOOL) build $$(case "$(CONTAINER_TOOL)" in *podman) echo --format docker;; esac) \
		--build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) --build-arg SOURCE=$(SOURCE) \
		-f images/Dockerfile -t $(IMAGE) bin/image
	@size=$$($(CONTAINER_TOOL) image inspect --format '{{.Size}}' $(IMAGE)); \
	packed=$$($(CONTAINER_TOOL) image save $(IMAGE) | gzip -6 | wc -c); \
	echo "image $(IMAGE): $$size bytes ($$((size / 1000000)) MB), $$packed bytes compressed ($$((packed / 1000000)) MB)"; \
	if [ "$$size" -gt "$(IMAGE_MAX_BYTES)" ]; then \
		echo "image: $$size bytes is more than IMAGE_MAX_BYTES=$(IMAGE_MAX_BYTES); see docs/container.md for where the bytes go"; \
		exit 1; \
	fi

# Installs the end-to-end tests' tools when one is missing and we are root;
# a no-op otherwise (unprivileged, the tests skip with a reason).
deps:
	@missing=""; \
	for tool in $(E2E_TOOLS); do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" -ne 0 ]; then \
		echo "deps: missing$$missing; not root, not installing (end-to-end tests will skip)"; \
		exit 0; \
	fi; \
	echo "deps: missing$$missing; installing $(E2E_PACKAGES)"; \
	apt-get update; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(E2E_PACKAGES)

# e2e runs last and uncached (-count=1): it builds ./cmd/anyguard in a
# subprocess, so go test's cache cannot tell when the gateway changed.
# Packages run one at a time (-p 1): the throughput smoke test saturates
# both cores, and the demo and cluster tests measure recovery against
# timeouts; on 2 cores the whole run stays around five minutes. Every fuzz
# target then runs for TESTFUZZTIME beyond its seeds (scripts/fuzz.sh).
test: deps
	$(GO) vet ./...
	$(GO) build -tags nodev -o /dev/null ./cmd/anyguard/   # the image's binary (make image) builds
	$(GO) test -p 1 -timeout $(TESTTIMEOUT) $(TESTFLAGS) $$($(GO) list ./... | grep -v '/e2e$$')
	$(GO) test -race -p 1 -timeout $(TESTTIMEOUT) $(TESTFLAGS) $(RACE_PKGS)
	GO="$(GO)" FUZZTIME="$(TESTFUZZTIME)" scripts/fuzz.sh
	$(GO) test -timeout $(TESTTIMEOUT) -count=1 $(TESTFLAGS) ./e2e/

# Runs every Fuzz target in the module for FUZZTIME each (`make test` does
# the same for TESTFUZZTIME); a failure leaves its crasher in the package's
# testdata/fuzz/ to commit with the fix.
fuzz:
	GO="$(GO)" FUZZTIME="$(FUZZTIME)" scripts/fuzz.sh

# Micro-benchmarks, then (as root) the throughput harness against stock
# wireguard-go built from the module proxy at the version go.mod embeds (never
# a distribution's old build), then the scale benchmark, then the handshake
# storm (unprivileged, about 2 minutes), then the cluster benchmark (gossip
# between gateways in one process, about 5 minutes); each
# refreshes its table in $(BENCH_DOC) (dated, naming the machine) and
# leaves JSON in bin/. Last, the failover benchmark (1,000 real clients,
# every scenario with fast recovery on and off, about 10 minutes) writes
# its table there too and its chart to docs/failover.svg.
bench: build
	$(GO) test -run='^$$' -bench=. -benchmem $(BENCH_PKGS) | tee bin/bench-micro.txt
	bin/anyguard bench micro --json bin/bench-micro.json --doc $(BENCH_DOC) < bin/bench-micro.txt > /dev/null
	GOBIN=$(CURDIR)/bin $(GO) install golang.zx2c4.com/wireguard@$$($(GO) list -m -f '{{.Version}}' golang.zx2c4.com/wireguard)
	@if [ "$$(id -u)" -ne 0 ]; then echo "bench: throughput needs root (network namespaces); skipped"; else \
		echo bin/anyguard bench throughput; \
		bin/anyguard bench throughput --wireguard-go bin/wireguard --duration $(BENCH_DURATION) --reps $(BENCH_REPS) --max-reps $(BENCH_MAX_REPS) \
			--json bin/bench-throughput.json --doc $(BENCH_DOC); \
	fi
	bin/anyguard bench scale --json bin/bench-scale.json --doc $(BENCH_DOC)
	bin/anyguard bench handshakes --repeat 2 --json bin/bench-handshakes.json --doc $(BENCH_DOC)
	bin/anyguard bench cluster --json bin/bench-cluster.json --doc $(BENCH_DOC)
	bin/anyguard bench failover --json bin/bench-failover.json --svg docs/failover.svg --doc $(BENCH_DOC)

lint:
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then echo "gofmt -l: not formatted:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) build -tags nodev -o /dev/null ./cmd/anyguard/
	@if command -v staticcheck >/dev/null 2>&1; then \
		echo staticcheck ./...; staticcheck ./...; \
	elif $(GO) run $(STATICCHECK) -version >/dev/null 2>&1; then \
		echo "$(GO) run $(STATICCHECK) ./..."; $(GO) run $(STATICCHECK) ./...; \
	else \
		echo "lint: staticcheck is not installed and $(STATICCHECK) does not resolve; skipped"; \
	fi

clean:
	rm -rf bin
