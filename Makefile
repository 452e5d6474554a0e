# relay-pki. The two commands a fresh machine needs: `make demo` and `make test`.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

GO       ?= go
MODULE   := github.com/relay-pki/relay-pki
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X $(MODULE)/internal/version.Version=$(VERSION) -X $(MODULE)/internal/version.Commit=$(COMMIT)
IMAGE    ?= relay-pki:$(VERSION)

# Real parts for the e2e tests and the demo, built from the Go module proxy into
# a git-ignored cache keyed by version: a second run builds nothing.
KUBE_VERSION         := v1.36.3
ETCD_VERSION         := v3.6.8
# The last MPL-2.0 release of Vault; newer ones do not build from the module proxy.
VAULT_VERSION        := v1.14.1
CERT_MANAGER_VERSION := $(shell $(GO) list -m -f '{{.Version}}' github.com/cert-manager/cert-manager)
TOOLS_DIR            ?= $(CURDIR)/.cache/tools
KUBE_APISERVER       := $(TOOLS_DIR)/kube-apiserver@$(KUBE_VERSION)
ETCD                 := $(TOOLS_DIR)/etcd@$(ETCD_VERSION)
CM_CONTROLLER        := $(TOOLS_DIR)/cert-manager-controller@$(CERT_MANAGER_VERSION)
CM_CRDS              := $(TOOLS_DIR)/cert-manager-crds@$(CERT_MANAGER_VERSION)
VAULT                := $(TOOLS_DIR)/vault@$(VAULT_VERSION)
KUBECTL              := $(TOOLS_DIR)/kubectl@$(KUBE_VERSION)
BENCH                := $(TOOLS_DIR)/relay-pki-bench
DEMO                 := $(TOOLS_DIR)/relay-pki-demo
TOOLS_ENV := RELAY_PKI_KUBE_APISERVER=$(KUBE_APISERVER) RELAY_PKI_ETCD=$(ETCD) \
             RELAY_PKI_CERT_MANAGER_CONTROLLER=$(CM_CONTROLLER) RELAY_PKI_CERT_MANAGER_CRDS=$(CM_CRDS) \
             RELAY_PKI_VAULT=$(VAULT) RELAY_PKI_KUBECTL=$(KUBECTL) \
             RELAY_PKI_BINARY=$(CURDIR)/bin/relay-pki
KUBE_LDFLAGS := -s -w -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
  -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36 \
  -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z
E2E_TIMEOUT ?= 30m

# Fuzz targets and how long `make fuzz` runs each.
FUZZTIME ?= 30s
FUZZ_TARGETS := ./config:FuzzDecodeValidate ./sync/remote:FuzzRESTConfig ./sync/trust:FuzzVerify

.PHONY: build
build: ## Build bin/relay-pki (static, trimmed, version stamped)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/relay-pki ./cmd/relay-pki

.PHONY: test
test: lint build unit fuzz-smoke e2e ## Run every test: lint, static build, unit tests, a short fuzz of each target, e2e on real control planes

.PHONY: e2e
e2e: tools build ## e2e tests on real kube-apiserver, etcd and cert-manager controllers
	$(TOOLS_ENV) $(GO) test -tags e2e -count=1 -v -timeout $(E2E_TIMEOUT) ./e2e/...

.PHONY: demo
demo: demo-tools build ## The main job on an embedded environment (ARGS=--exit-when-ready to stop after the table)
	@echo ">> building the demo driver"
	$(GO) build -o $(DEMO) ./e2e/cmd/demo
	$(TOOLS_ENV) $(DEMO) --work-dir $(CURDIR)/.cache/demo $(ARGS)

# The benchmark: not part of `make test`. BENCH_ARGS=--sizes=10,100 for a
# quicker run; results land in BENCH_OUT.
BENCH_OUT ?= $(CURDIR)/docs/bench
.PHONY: bench
bench: demo-tools $(KUBECTL) build ## Fan-out, steady-state, memory and cold-start benchmark (N=10/100/1000) against the floor and the kubectl loop
	@echo ">> building the benchmark driver"
	$(GO) build -o $(BENCH) ./e2e/bench
	$(TOOLS_ENV) $(BENCH) --work-dir $(CURDIR)/.cache/bench --out $(BENCH_OUT) $(BENCH_ARGS)

.PHONY: tools demo-tools
tools: demo-tools $(VAULT) ## Build the e2e tools (once per version)
demo-tools: $(KUBE_APISERVER) $(ETCD) $(CM_CONTROLLER) $(CM_CRDS)

$(KUBE_APISERVER): e2e/tools/kube-apiserver/go.mod
	@mkdir -p $(TOOLS_DIR)
	@echo ">> building kube-apiserver $(KUBE_VERSION) from the module proxy (first run: about 7 min on 2 cores)"
	@start=$$(date +%s); cd e2e/tools/kube-apiserver && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(KUBE_LDFLAGS)" \
	  -o $@.tmp k8s.io/kubernetes/cmd/kube-apiserver && mv $@.tmp $@ && echo ">> kube-apiserver built in $$(( $$(date +%s) - start ))s"

$(ETCD): e2e/tools/etcd/go.mod e2e/tools/etcd/main.go
	@mkdir -p $(TOOLS_DIR)
	@echo ">> building etcd $(ETCD_VERSION) from the module proxy (first run: about 90 s)"
	@start=$$(date +%s); cd e2e/tools/etcd && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $@.tmp . \
	  && mv $@.tmp $@ && echo ">> etcd built in $$(( $$(date +%s) - start ))s"

$(KUBECTL): e2e/tools/kubectl/go.mod e2e/tools/kubectl/main.go
	@mkdir -p $(TOOLS_DIR)
	@echo ">> building kubectl $(KUBE_VERSION) from the module proxy (first run: about 2 min)"
	@start=$$(date +%s); cd e2e/tools/kubectl && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(KUBE_LDFLAGS)" -o $@.tmp . \
	  && mv $@.tmp $@ && echo ">> kubectl built in $$(( $$(date +%s) - start ))s"

$(VAULT): e2e/tools/vault/go.mod
	@mkdir -p $(TOOLS_DIR)
	@echo ">> building Vault $(VAULT_VERSION) from the module proxy (first run: about 5 min on 2 cores)"
	@start=$$(date +%s); cd e2e/tools/vault && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $@.tmp github.com/hashicorp/vault \
	  && mv $@.tmp $@ && echo ">> vault built in $$(( $$(date +%s) - start ))s"

$(CM_CONTROLLER): go.mod go.sum $(wildcard e2e/cmd/cert-manager-controller/*.go)
	@mkdir -p $(TOOLS_DIR)
	@echo ">> building cert-manager $(CERT_MANAGER_VERSION) controllers (first run: about 2 min)"
	@start=$$(date +%s); CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $@.tmp ./e2e/cmd/cert-manager-controller \
	  && mv $@.tmp $@ && echo ">> cert-manager controllers built in $$(( $$(date +%s) - start ))s"

$(CM_CRDS): go.mod
	@echo ">> copying cert-manager $(CERT_MANAGER_VERSION) CRDs from the module"
	@dir=$$($(GO) mod download -json github.com/cert-manager/cert-manager@$(CERT_MANAGER_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	  test -d "$$dir/deploy/crds" || { echo "cert-manager module has no deploy/crds at '$$dir'"; exit 1; }; \
	  rm -rf $@.tmp && mkdir -p $@.tmp && cp $$dir/deploy/crds/*.yaml $@.tmp/ && chmod u+w $@.tmp/* && rm -rf $@ && mv $@.tmp $@

.PHONY: unit
unit: ## Unit tests with the race detector (no e2e)
	$(GO) test -race -count=1 ./...

.PHONY: lint
lint: ## go vet and a gofmt check
	$(GO) vet ./...
	@out=$$(find . -name '*.go' -not -path './.cache/*' -print0 | xargs -0 gofmt -l); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
	  echo "fuzz $$pkg $$fn for $(FUZZTIME)"; \
	  $(GO) test $$pkg -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME); done

.PHONY: fuzz-smoke
fuzz-smoke: ## Run each fuzz target briefly (part of make test)
	@$(MAKE) --no-print-directory fuzz FUZZTIME=5s

.PHONY: image
image: ## Build the container image (needs a Docker engine)
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .

.PHONY: clean
clean: ## Remove build output (not the tools cache)
	rm -rf bin .cache/demo

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16
