# loopstock: `make run` starts the local stack, `make test` runs every test.
# Every tool is pinned and built here (Go tools in tools/), so a machine
# with Go and make is enough.

SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/loopstock/loopstock/internal/version.Version=$(VERSION)
BIN     := $(CURDIR)/.bin
export PATH := $(BIN):$(PATH)
# The test helpers find nsqd, nsqlookupd and consul here.
export LOOPSTOCK_TOOLS := $(BIN)

SERVICES   := integer-gen integeraverage-cal integer-api nsqd-gate dataplane-probe
NSQ_TOOLS  := $(BIN)/nsqd $(BIN)/nsqlookupd $(BIN)/nsqadmin $(BIN)/hivemind $(BIN)/bench_writer $(BIN)/bench_reader
GO_SOURCES := $(shell find . -name '*.go' -not -path './.data/*' -not -path './tools/*' -not -path './platform/*') go.mod go.sum
# The services' module (.) and the platform checks' module (platform/: Butane,
# Ignition, Nomad job and Terraform checks, the cluster test), kept apart so
# the services' go.mod lists only what the services use.
GO_MODULES := . platform

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

## --- build ---------------------------------------------------------------

.PHONY: build
build: $(addprefix $(BIN)/,$(SERVICES)) ## build the three services, nsqd-gate and dataplane-probe into .bin/

$(addprefix $(BIN)/,$(SERVICES)): $(GO_SOURCES)
	@mkdir -p $(BIN)
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(SERVICES))

.PHONY: tools
tools: $(NSQ_TOOLS) $(BIN)/consul $(BIN)/prometheus $(BIN)/promtool $(BIN)/alertmanager $(BIN)/amtool redis ## build the pinned tools (nsq, consul, prometheus, promtool, alertmanager, amtool, hivemind) and install redis-server

$(NSQ_TOOLS) &: tools/nsq/go.mod tools/nsq/go.sum
	@mkdir -p $(BIN)
	@echo "building nsqd, nsqlookupd, nsqadmin, bench_writer, bench_reader (nsq v1.3.0) and hivemind (v1.1.0)"
	cd tools/nsq && go build -o $(BIN)/ github.com/nsqio/nsq/apps/nsqd github.com/nsqio/nsq/apps/nsqlookupd \
		github.com/nsqio/nsq/apps/nsqadmin github.com/nsqio/nsq/bench/bench_writer github.com/nsqio/nsq/bench/bench_reader \
		github.com/DarthSim/hivemind

$(BIN)/consul: tools/consul/go.mod tools/consul/go.sum
	@mkdir -p $(BIN)
	@echo "building consul v1.14.11 (about 6 minutes the first time)"
	cd tools/consul && go build -o $(BIN)/ github.com/hashicorp/consul

# Prometheus from its Go module: only Consul, file and static discovery
# compiled in (Debian's prometheus has no Consul discovery), no web UI
# assets (the API, /-/ready and the rules work). The same version as the
# monitoring job's (nomad/monitoring.nomad.hcl).
PROMETHEUS_VERSION := 3.16.0

$(BIN)/prometheus $(BIN)/promtool &: tools/monitoring/go.mod tools/monitoring/go.sum
	@mkdir -p $(BIN)
	@echo "building prometheus $(PROMETHEUS_VERSION) and promtool (about 5 minutes the first time)"
	cd tools/monitoring && CGO_ENABLED=0 go build -trimpath -tags remove_all_sd,enable_consul_sd \
		-ldflags '-s -w -X github.com/prometheus/common/version.Version=$(PROMETHEUS_VERSION)' -o $(BIN)/ \
		github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool

# Alertmanager 0.25.0 from its module: the last release whose module carries
# its web assets (later ones do not build from the module alone), static.
$(BIN)/alertmanager $(BIN)/amtool &: tools/alertmanager/go.mod tools/alertmanager/go.sum
	@mkdir -p $(BIN)
	@echo "building alertmanager 0.25.0 and amtool (about 2 minutes the first time)"
	cd tools/alertmanager && CGO_ENABLED=0 go build -trimpath \
		-ldflags '-s -w -X github.com/prometheus/common/version.Version=0.25.0' -o $(BIN)/ \
		github.com/prometheus/alertmanager/cmd/alertmanager github.com/prometheus/alertmanager/cmd/amtool

.PHONY: redis
redis:
	@scripts/ensure-apt redis-server:redis-server redis-cli:redis-tools

## --- run -----------------------------------------------------------------

.PHONY: run
run: build tools ## run the whole stack on 127.0.0.1 (Ctrl-C stops it)
	@scripts/run-local

.PHONY: stop
stop: ## stop a running `make run` from another terminal
	@if [ -f .data/run.pid ]; then kill -INT $$(cat .data/run.pid) 2>/dev/null; pkill -INT -P $$(cat .data/run.pid) hivemind 2>/dev/null; echo "stopping"; else echo "not running"; fi

.PHONY: ports
ports: ## print the URLs and ports of the local stack
	@scripts/print-urls

.PHONY: cleanup
cleanup: stop ## stop the stack and delete its local data (.data/)
	rm -rf .data

## --- nomad ---------------------------------------------------------------

# The deploy command (platform/cmd/nomad-run, on Nomad's and Consul's API
# clients). On dev agents it runs the nomad binary of NOMAD_BIN, .bin/ or PATH.
NOMAD_RUN_SOURCES := $(shell find platform/deploy platform/cmd/nomad-run -name '*.go' 2>/dev/null) platform/go.mod platform/go.sum $(GO_SOURCES)

$(BIN)/nomad-run: $(NOMAD_RUN_SOURCES)
	@mkdir -p $(BIN)
	cd platform && CGO_ENABLED=0 go build -trimpath -o $(BIN)/ ./cmd/nomad-run

.PHONY: nomad-run
nomad-run: build tools $(BIN)/nomad-run ## run every job in nomad/ (dev agents on 127.0.0.1, or $$NOMAD_ADDR)
	@if [ -z "$${NOMAD_ADDR:-}$${NOMAD_BIN:-}" ] && ! command -v nomad >/dev/null && [ -f "$(NOMAD_ARCHIVE)" ]; then $(MAKE) -s $(BIN)/nomad; fi
	@$(BIN)/nomad-run

.PHONY: nomad-stop
nomad-stop: $(BIN)/nomad-run ## stop the jobs (and the dev agents nomad-run started), leaving no process behind
	@$(BIN)/nomad-run stop

.PHONY: dist
DIST_ARCHS ?= amd64 arm64

dist: ## release tarballs for the cluster's exec driver (DIST_ARCHS), with SHA256SUMS, in dist/
	@rm -rf dist && mkdir -p dist
	@for arch in $(DIST_ARCHS); do \
		dir=dist/loopstock_$(VERSION)_linux_$$arch; mkdir -p $$dir; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch go build -trimpath -ldflags '$(LDFLAGS)' -o $$dir/ $(addprefix ./cmd/,$(SERVICES)) || exit 1; \
		tar -C $$dir -czf $$dir.tar.gz --owner=0 --group=0 --mtime='2000-01-01' $(SERVICES) && rm -rf $$dir; \
	done
	@cd dist && sha256sum *.tar.gz > SHA256SUMS && cat SHA256SUMS

# NSQ's release layout, so nomad/nsq.nomad.hcl finds its binaries where the
# upstream v1.3.0 release tarball has them; built from the pinned module.
NSQ_RELEASE := nsq-1.3.0.linux-amd64.go1.21.5

.PHONY: nsq-release
nsq-release: $(NSQ_TOOLS) ## the NSQ v1.3.0 release tarball (NSQ's own layout and name) in dist/, for clusters that cannot fetch upstream's
	@mkdir -p dist/$(NSQ_RELEASE)/bin && cp $(BIN)/nsqd $(BIN)/nsqlookupd $(BIN)/nsqadmin dist/$(NSQ_RELEASE)/bin/
	@tar -C dist -czf dist/$(NSQ_RELEASE).tar.gz --owner=0 --group=0 --mtime='2000-01-01' $(NSQ_RELEASE) && rm -rf dist/$(NSQ_RELEASE)
	@cd dist && sha256sum $(NSQ_RELEASE).tar.gz | tee -a SHA256SUMS

# Prometheus and Alertmanager in their upstream release layouts, for
# clusters that cannot fetch upstream's: Prometheus from the pinned module
# and Alertmanager's from the pinned modules (make tools builds them).
PROMETHEUS_RELEASE   := prometheus-3.16.0.linux-amd64
ALERTMANAGER_RELEASE := alertmanager-0.25.0.linux-amd64

.PHONY: monitoring-release
monitoring-release: $(BIN)/prometheus $(BIN)/alertmanager ## Prometheus 3.16.0 and Alertmanager 0.25.0 tarballs (upstream's layout and names) in dist/, for clusters that cannot fetch upstream's
	@mkdir -p dist/$(PROMETHEUS_RELEASE) dist/$(ALERTMANAGER_RELEASE)
	@cp $(BIN)/prometheus $(BIN)/promtool dist/$(PROMETHEUS_RELEASE)/
	@cp $(BIN)/alertmanager $(BIN)/amtool dist/$(ALERTMANAGER_RELEASE)/
	@for r in $(PROMETHEUS_RELEASE) $(ALERTMANAGER_RELEASE); do \
		tar -C dist -czf dist/$$r.tar.gz --owner=0 --group=0 --mtime='2000-01-01' $$r && rm -rf dist/$$r; \
		(cd dist && sha256sum $$r.tar.gz | tee -a SHA256SUMS); done

## --- vagrant (a local Flatcar cluster; see docs/provisioning.md) ----------

# Consul and Nomad as the Flatcar sysext bakery publishes them (versions its
# release_build_versions.txt builds; each image checked against the bakery's
# SHA256SUMS of its release). The box comes from Flatcar's own images of one
# release: the first release line whose VirtualBox image reads Ignition.
CONSUL_VERSION  ?= 1.21.4
NOMAD_VERSION   ?= 1.10.0
FLATCAR_VERSION ?= 4757.1.0
FLATCAR_CHANNEL ?= beta
VAGRANT_OUT     ?= $(CURDIR)/.vagrant/loopstock
VAGRANT_PROVIDER ?= virtualbox
# Where the VMs of each provider reach this host (cmd/vagrant-config renders
# the same addresses): VirtualBox's NAT maps 10.0.2.2 to the loopback.
VAGRANT_SERVE_ADDR = $(if $(filter libvirt,$(VAGRANT_PROVIDER)),192.168.122.1,127.0.0.1)

.PHONY: vagrant-assets
vagrant-assets: ## download and check, once, the Flatcar images (built into the box) and the sysext images (then vagrant up works offline)
	@CONSUL_VERSION=$(CONSUL_VERSION) NOMAD_VERSION=$(NOMAD_VERSION) FLATCAR_VERSION=$(FLATCAR_VERSION) \
		FLATCAR_CHANNEL=$(FLATCAR_CHANNEL) VAGRANT_OUT=$(VAGRANT_OUT) scripts/vagrant-assets

.PHONY: vagrant-config
vagrant-config: ## render each VM's Ignition from ignition/ and its secrets (vagrant up runs it)
	@cd platform && go run ./cmd/vagrant-config --out "$(abspath $(VAGRANT_OUT))" --ignition ../ignition --ssh-key-file "$(abspath $(VAGRANT_PUBKEY))" \
		--consul-version $(CONSUL_VERSION) --nomad-version $(NOMAD_VERSION)

.PHONY: vagrant-serve
vagrant-serve: ## serve $(VAGRANT_OUT)/www on port 8088 where the VMs reach this host (vagrant up runs it)
	@if [ -f $(VAGRANT_OUT)/serve.pid ] && kill -0 $$(cat $(VAGRANT_OUT)/serve.pid) 2>/dev/null; then \
		[ "$$(cat $(VAGRANT_OUT)/serve.addr 2>/dev/null)" = "$(VAGRANT_SERVE_ADDR)" ] && exit 0; kill $$(cat $(VAGRANT_OUT)/serve.pid); fi; \
		python3 -m http.server 8088 --bind $(VAGRANT_SERVE_ADDR) --directory $(VAGRANT_OUT)/www >$(VAGRANT_OUT)/serve.log 2>&1 & \
		echo $$! > $(VAGRANT_OUT)/serve.pid; echo $(VAGRANT_SERVE_ADDR) > $(VAGRANT_OUT)/serve.addr

.PHONY: vagrant-serve-stop
vagrant-serve-stop:
	@[ -f $(VAGRANT_OUT)/serve.pid ] && kill $$(cat $(VAGRANT_OUT)/serve.pid) 2>/dev/null; rm -f $(VAGRANT_OUT)/serve.pid $(VAGRANT_OUT)/serve.addr

## --- terraform (OpenTofu and its providers from the shared tools) ----------

# CI has the shared tools beside the checkout; elsewhere set TOFU_DIR (an
# unpacked archive: tofu and mirror/) or put tofu on PATH.
SHARED_TOOLS ?= $(CURDIR)/../shared/tools
TOFU_ARCHIVE := $(SHARED_TOOLS)/opentofu-1.10.10-providers-linux-amd64.tar.xz

$(BIN)/tofu/tofu: $(wildcard $(TOFU_ARCHIVE))
	@mkdir -p $(BIN)/tofu
	tar -C $(BIN)/tofu -xJf $(TOFU_ARCHIVE)
	@touch $@

# Nomad is not served by the Go module proxy: a Nomad binary comes from
# NOMAD_BIN, from $(SHARED_TOOLS) (the archive CI provides), or from PATH.
NOMAD_ARCHIVE := $(SHARED_TOOLS)/nomad-1.6.5-linux-amd64.xz

$(BIN)/nomad: $(wildcard $(NOMAD_ARCHIVE))
	@mkdir -p $(BIN)
	xz -dc $(NOMAD_ARCHIVE) > $@.tmp && chmod +x $@.tmp && mv $@.tmp $@

# The real Ignition engine, for the cluster test (cgo, with libblkid).
$(BIN)/ignition: tools/ignition/go.mod tools/ignition/go.sum
	@mkdir -p $(BIN)
	@scripts/ensure-apt /usr/include/blkid/blkid.h:libblkid-dev gcc:gcc
	@echo "building ignition v2.24.0 (about 2 minutes the first time)"
	cd tools/ignition && CGO_ENABLED=1 go build -trimpath \
		-ldflags '-X github.com/coreos/ignition/v2/internal/distro.selinuxRelabel=false' -o $(BIN)/ignition github.com/coreos/ignition/v2/internal

.PHONY: test-cluster
test-cluster: $(BIN)/consul $(BIN)/prometheus $(BIN)/alertmanager ## boot 3 servers and 2 clients from their Ignition (systemd-nspawn, root) and check the cluster from outside
	@mkdir -p .data; \
	if [ "$$(id -u)" != 0 ]; then echo "test-cluster skipped: it boots containers and needs root: run 'sudo make test-cluster'"; exit 0; fi; \
	scripts/ensure-apt systemd-nspawn:systemd-container debootstrap:debootstrap mksquashfs:squashfs-tools unshare:util-linux ip:iproute2 xz:xz-utils || exit 1; \
	nomad=$${NOMAD_BIN:-}; \
	if [ -z "$$nomad" ] && [ -f "$(NOMAD_ARCHIVE)" ]; then $(MAKE) -s $(BIN)/nomad && nomad=$(BIN)/nomad; fi; \
	if [ -z "$$nomad" ]; then nomad=$$(command -v nomad || true); fi; \
	if [ -z "$$nomad" ]; then echo "test-cluster skipped: no Nomad: set NOMAD_BIN or put nomad on PATH"; exit 0; fi; \
	$(MAKE) -s $(BIN)/ignition && \
	set -o pipefail && cd platform && \
	CONSUL_BIN=$${CONSUL_BIN:-$(BIN)/consul} NOMAD_BIN=$$nomad IGNITION_BIN=$(BIN)/ignition \
		go test -count=1 -v -timeout 35m -run '^TestCluster$$' ./clustertest 2>&1 | tee ../.data/test-cluster.log \
		| { grep -E '^(--- |PASS|FAIL|ok |hosts=|debootstrap|cluster test:)|^ +[a-z_]+_test\.go:[0-9]+:' || true; }

.PHONY: test-terraform
test-terraform: ## tofu validate of every example whose providers are at hand; tofu apply of the Ignition module must equal the Go rendering
	@mkdir -p .data
	@set -o pipefail; \
	if [ -z "$$TOFU_DIR" ] && [ -f "$(TOFU_ARCHIVE)" ]; then $(MAKE) -s $(BIN)/tofu/tofu && export TOFU_DIR=$(BIN)/tofu; fi; \
	cd platform && go test -count=1 -v -timeout 10m ./tofu 2>&1 | tee ../.data/test-terraform.log \
		| { grep -E '^(--- FAIL|FAIL|ok |examples_validated=|tofu checks skipped)|tofu_test.go' || true; }

## --- test ----------------------------------------------------------------

.PHONY: test
test: tools lint test-vagrantfile test-terraform test-go test-collisions test-faults test-cluster ## everything CI runs: lint, unit, integration, end-to-end, collision, fault, Terraform and cluster tests

.PHONY: test-vagrantfile
test-vagrantfile: ## ruby -c, and vagrant validate refuses unrendered configs and passes on rendered ones (installs Debian's vagrant if missing)
	@CONSUL_VERSION=$(CONSUL_VERSION) NOMAD_VERSION=$(NOMAD_VERSION) scripts/check-vagrantfile

.PHONY: test-go
test-go: tools ## unit, integration and end-to-end tests (the page test in headless Chromium)
	@scripts/ensure-apt chromium:chromium
	LOOPSTOCK_REQUIRE_CHROMIUM=1 go test -count=1 -timeout 20m -skip '^(TestNoCollisions|TestFaults)$$' ./...
	@# Nomad for the job files' dev-agent test: NOMAD_BIN, PATH, or the release archive beside the checkout.
	@if [ -z "$${NOMAD_BIN:-}" ] && ! command -v nomad >/dev/null && [ -f "$(NOMAD_ARCHIVE)" ]; then $(MAKE) -s $(BIN)/nomad; fi
	cd platform && go test -count=1 -timeout 25m $$(go list ./... | grep -v /clustertest)

.PHONY: test-collisions
test-collisions: tools ## generators on real Consul and nsqd, restarted and joined, audited by slot: 0 collisions
	@mkdir -p .data
	@set -o pipefail; go test -count=1 -v -timeout 20m -run '^TestNoCollisions$$' ./test/collisions 2>&1 | tee .data/test-collisions.log \
		| { grep -E '^(--- |PASS|FAIL|ok |slots=)|collisions_test.go' || true; }

.PHONY: test-faults
test-faults: tools ## SIGKILL every kind of process at seeded random moments: no integer lost or doubled (LOOPSTOCK_FAULT_SEED replays)
	@mkdir -p .data
	@set -o pipefail; go test -count=1 -v -timeout 20m -run '^TestFaults$$' ./test/faults 2>&1 | tee .data/test-faults.log \
		| { grep -E '^(seed=|\[ *[0-9.]+s\]|kills|--- |PASS|FAIL|ok )|faults_test.go' || true; }

.PHONY: test-unit
test-unit: ## unit tests only (no servers)
	go test -count=1 -short ./...
	cd platform && go test -count=1 -short ./...

.PHONY: bench
bench: tools ## measure the pipeline, per-integer cost, API, freshness and footprint; writes docs/benchmarks.md
	@mkdir -p .data
	go test -run '^$$' -bench . -benchmem ./internal/... ./services/... | tee .data/go-bench.txt
	LOOPSTOCK_BENCH_OUT=$(CURDIR)/docs/benchmarks.md go test -count=1 -v -timeout 30m -run '^TestBench$$' ./test/bench

.PHONY: lint
lint: ## go vet, gofmt and go mod tidy must leave nothing to change (both modules); the scripts must parse
	@for m in $(GO_MODULES); do (cd $$m && go vet ./...) || exit 1; done
	@for f in scripts/*; do bash -n "$$f" || { echo "$$f does not parse"; exit 1; }; done
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@for m in $(GO_MODULES); do \
		tmp=$$(mktemp -d) && cp $$m/go.mod $$m/go.sum $$tmp/ && (cd $$m && go mod tidy) && \
		if ! cmp -s $$m/go.mod $$tmp/go.mod || ! cmp -s $$m/go.sum $$tmp/go.sum; then \
			echo "go mod tidy changed $$m/go.mod or go.sum: commit its result"; rm -rf $$tmp; exit 1; fi; rm -rf $$tmp; \
	done

## --- housekeeping --------------------------------------------------------

.PHONY: clean
clean: ## remove built binaries (tools included) and test caches
	rm -rf $(BIN) dist
	go clean -testcache
