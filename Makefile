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

# Fuzz targets and how long `make fuzz` runs each.
FUZZTIME ?= 30s
FUZZ_TARGETS := ./config:FuzzDecodeValidate

.PHONY: build
build: ## Build bin/relay-pki (static, trimmed, version stamped)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/relay-pki ./cmd/relay-pki

.PHONY: test
test: lint unit ## Run every test

.PHONY: unit
unit: ## Unit tests with the race detector
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

.PHONY: image
image: ## Build the container image (needs a Docker engine)
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .

.PHONY: clean
clean: ## Remove build output (not the tools cache)
	rm -rf bin

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16
