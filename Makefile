# Weft developer entry points. `make test` and `make demo` are the two that matter;
# both build the local Kubernetes binaries first if they are missing or stale.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
BIN       := $(CURDIR)/bin
TOOLS_DIR := testenv/tools
TOOLS_MOD := $(TOOLS_DIR)/go.mod
STAMPS    := $(BIN)/.stamps

# The pinned versions come from the tools module, the only place they are written down.
modversion = $(shell awk '$$1 == "$(1)" && $$2 ~ /^v/ { print $$2; exit }' $(TOOLS_MOD))
K8S_VERSION  := $(call modversion,k8s.io/kubernetes)
ETCD_VERSION := $(call modversion,go.etcd.io/etcd/server/v3)
KWOK_VERSION := $(call modversion,sigs.k8s.io/kwok)
$(if $(and $(K8S_VERSION),$(ETCD_VERSION),$(KWOK_VERSION)),,$(error cannot read pinned versions from $(TOOLS_MOD)))
# cert-manager's controllers, for the external PKI tests, are a module of their own so that
# cert-manager's requirements never move the versions the Kubernetes binaries are built with.
CM_TOOLS_DIR := $(TOOLS_DIR)/certmanager
CM_VERSION   := $(shell awk '{ sub(/^require /, "") } $$1 == "github.com/cert-manager/cert-manager" && $$2 ~ /^v/ { print $$2; exit }' $(CM_TOOLS_DIR)/go.mod)
$(if $(CM_VERSION),,$(error cannot read the pinned cert-manager version from $(CM_TOOLS_DIR)/go.mod))
# The Prometheus server, for telemetry/promsource's TestRealPrometheus, likewise.
PROM_TOOLS_DIR := $(TOOLS_DIR)/prometheus
PROM_VERSION   := $(shell awk '{ sub(/^require /, "") } $$1 == "github.com/prometheus/prometheus" && $$2 ~ /^v/ { print $$2; exit }' $(PROM_TOOLS_DIR)/go.mod)
$(if $(PROM_VERSION),,$(error cannot read the pinned Prometheus version from $(PROM_TOOLS_DIR)/go.mod))
K8S_MAJOR    := $(word 1,$(subst ., ,$(patsubst v%,%,$(K8S_VERSION))))
K8S_MINOR    := $(word 2,$(subst ., ,$(patsubst v%,%,$(K8S_VERSION))))

# Without these the servers report v0.0.0-master, which testenv's version check rejects.
K8S_LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
	-X k8s.io/component-base/version.gitMajor=$(K8S_MAJOR) \
	-X k8s.io/component-base/version.gitMinor=$(K8S_MINOR) \
	-X k8s.io/component-base/version.gitTreeState=clean

K8S_BINS  := kube-apiserver kube-controller-manager kube-scheduler
ALL_BINS  := $(K8S_BINS) etcd kwok cert-manager-controller prometheus

# Packages that run goroutines against each other get the race detector; the rest run
# without it to keep `make test` reasonable on two cores. Patterns that match nothing yet
# (packages still to be written) are skipped.
RACE_PKGS ?= ./testenv/... ./xds/... ./controller/... ./cmd/...
# What `make test` covers; narrow it while working: make test PKGS=./testenv/...
PKGS ?= ./...
TEST_FLAGS ?= -count=1
TEST_TIMEOUT ?= 20m

.PHONY: help
help:
	@echo "make demo   start a local Kubernetes with the sample app; Ctrl-C tears it down"
	@echo "make test   build the Kubernetes binaries if needed, go vet, go test (race where it matters)"
	@echo "make bins   build kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kwok, cert-manager-controller, prometheus into bin/"
	@echo "make devcluster   start only the local Kubernetes and print its kubeconfig"
	@echo "make bench  measure the control plane under simulated proxies (docs/performance.md)"
	@echo "make clean  remove bin/"

.PHONY: bins
bins: $(addprefix $(BIN)/,$(ALL_BINS))

# A stamp per binary holds the version it must be built at. The stamp is rewritten only when
# that version changes, so its mtime tells make whether the binary is stale.
$(STAMPS)/%.version: FORCE
	@mkdir -p $(STAMPS)
	@want='$(call stampfor,$*)'; \
	if [ "$$(cat $@ 2>/dev/null)" != "$$want" ]; then echo "$$want" > $@; fi

stampfor = $(if $(filter $(1),$(K8S_BINS)),k8s.io/kubernetes $(K8S_VERSION),$(if $(filter etcd,$(1)),go.etcd.io/etcd/server/v3 $(ETCD_VERSION),$(if $(filter cert-manager-controller,$(1)),github.com/cert-manager/cert-manager $(CM_VERSION),$(if $(filter prometheus,$(1)),github.com/prometheus/prometheus $(PROM_VERSION),sigs.k8s.io/kwok $(KWOK_VERSION)))))

$(addprefix $(BIN)/,$(K8S_BINS)): $(BIN)/%: $(STAMPS)/%.version
	@echo "building $* $(K8S_VERSION)"
	cd $(TOOLS_DIR) && $(GO) build -trimpath -ldflags "$(K8S_LDFLAGS)" -o $@ k8s.io/kubernetes/cmd/$*

$(BIN)/etcd: $(STAMPS)/etcd.version
	@echo "building etcd $(ETCD_VERSION)"
	cd $(TOOLS_DIR) && $(GO) build -trimpath -o $@ go.etcd.io/etcd/server/v3

$(BIN)/kwok: $(STAMPS)/kwok.version
	@echo "building kwok $(KWOK_VERSION)"
	cd $(TOOLS_DIR) && $(GO) build -trimpath -o $@ sigs.k8s.io/kwok/cmd/kwok

$(BIN)/cert-manager-controller: $(STAMPS)/cert-manager-controller.version $(CM_TOOLS_DIR)/main.go
	@echo "building cert-manager-controller $(CM_VERSION)"
	cd $(CM_TOOLS_DIR) && $(GO) build -trimpath -o $@ .

$(BIN)/prometheus: $(STAMPS)/prometheus.version
	@echo "building prometheus $(PROM_VERSION)"
	cd $(PROM_TOOLS_DIR) && $(GO) build -trimpath -o $@ github.com/prometheus/prometheus/cmd/prometheus

.PHONY: FORCE
FORCE:

# Stamps are inputs, not intermediates: keep them between runs.
.PRECIOUS: $(STAMPS)/%.version

.PHONY: vet
vet:
	$(GO) vet $(PKGS)

.PHONY: test
test: bins vet
	@all=$$($(GO) list $(PKGS)); \
	racy=$$($(GO) list $(RACE_PKGS) 2>/dev/null || true); \
	race=$$(grep -xF -f <(printf '%s\n' $$racy) <<<"$$all" || true); \
	rest=$$(grep -vxF -f <(printf '%s\n' $$race) <<<"$$all" || true); \
	if [ -n "$$rest" ]; then \
		echo "go test $(TEST_FLAGS): $$(wc -w <<<"$$rest") packages"; \
		$(GO) test $(TEST_FLAGS) -timeout $(TEST_TIMEOUT) $$rest; \
	fi; \
	if [ -n "$$race" ]; then \
		echo "go test -race $(TEST_FLAGS): $$(wc -w <<<"$$race") packages"; \
		$(GO) test -race $(TEST_FLAGS) -timeout $(TEST_TIMEOUT) $$race; \
	fi

# Built, then run directly rather than with `go run`, whose own exit status after Ctrl-C
# would make a clean teardown look like a failure.
.PHONY: demo
demo: bins
	$(GO) build -o $(BIN)/demo ./testenv/cmd/demo
	$(BIN)/demo

.PHONY: devcluster
devcluster: bins
	$(GO) build -o $(BIN)/devcluster ./testenv/cmd/devcluster
	$(BIN)/devcluster

# The standard scenario set of docs/performance.md. Narrow it while working, e.g.
#   make bench BENCH_PROXIES="1000" BENCH_FLAGS="--scenarios endpoint-flap --changes 5"
# Runs above ~500 proxies take the machine's two cores: BENCH_LOCK names a lock file that
# serialises them with other heavy measurements (empty: no lock).
BENCH_PROXIES  ?= 1000 5000 10000
BENCH_SERVICES ?= 2000
BENCH_OUT      ?= $(CURDIR)/bench-out
BENCH_FLAGS    ?=
BENCH_LOCK     ?=
comma := ,
empty :=
space := $(empty) $(empty)

.PHONY: bench
bench: bins
	$(GO) build -o $(BENCH_OUT)/cp ./cmd/cp
	$(GO) build -o $(BENCH_OUT)/weft ./cmd/weft
	$(if $(BENCH_LOCK),flock $(BENCH_LOCK)) $(BENCH_OUT)/weft bench --cp-binary $(BENCH_OUT)/cp \
		--proxies $(subst $(space),$(comma),$(strip $(BENCH_PROXIES))) --services $(BENCH_SERVICES) \
		--out $(BENCH_OUT) $(BENCH_FLAGS)

.PHONY: clean
clean:
	rm -rf $(BIN)
