# The two commands a newcomer needs: `make run` and `make test`.
GO       ?= go
BIN      := bin/kubernetes-mcp-server
ARGS     ?=

.PHONY: all build run test test-deps images examples vet staticcheck fmt-check clean bench fuzz security-report container-image

all: build

build:
	$(GO) build -o $(BIN) ./cmd/kubernetes-mcp-server

# Builds, then serves MCP over HTTP on 127.0.0.1:8080 with the example
# plugins of examples/plugins, sandboxed: hack/run.sh installs containerd and
# runc when missing, builds the sandbox image and the plugins (cached), and
# starts a private containerd when none answers (stopped with the server).
# More flags with ARGS="..." (they win: ARGS="--port 9000").
run: build
	KMCP_RUN_BINARY=$(CURDIR)/$(BIN) hack/run.sh $(ARGS)

# Builds the WebAssembly example plugins (examples/wasm, manifest-lint) and
# kube-score for GOOS=wasip1 (cached; prints their folder). The native
# examples are built by `make run` (hack/run.sh).
examples:
	hack/build-wasm-plugins.sh

# Installs what the tests need (Debian packages, a cached kube-apiserver).
test-deps:
	hack/test-deps.sh

# Builds the plugin sandbox's root filesystem (cached; prints its path).
images:
	hack/build-image.sh

# Builds the container image of the Dockerfile with podman, offline, from
# local Debian base images (cached by content; prints its name and tags it
# localhost/kubernetes-mcp-server:latest). See hack/build-container-image.sh.
container-image:
	hack/build-container-image.sh

# Installs what the tests need, then runs every test against real parts,
# then fuzzes a little (`make fuzz`).
test: test-deps fmt-check vet staticcheck
	$(GO) test -count=1 -timeout 40m ./...
	$(MAKE) fuzz

# Runs each fuzz target for FUZZTIME (3000 inputs each; about 80 s in all,
# most of it building the fuzzing binaries), one `go test -fuzz` per target
# as Go requires. Inputs that fail are written to the package's
# testdata/fuzz/<Target>, and plain `go test` replays them. A count, not a
# duration: with a duration Go 1.26's fuzz coordinator can fail a target
# that found nothing, "context deadline exceeded" at the end of its time
# (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 3000x
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzCheckArgsAgainstParsers$$' -fuzztime $(FUZZTIME) ./runtime
	$(GO) test -run '^$$' -fuzz '^FuzzArgv$$' -fuzztime $(FUZZTIME) ./mcpserver
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/helpparse
	$(GO) test -run '^$$' -fuzz '^FuzzDataSegments$$' -fuzztime $(FUZZTIME) ./sandbox/wasm
	$(GO) test -run '^$$' -fuzz '^FuzzPluginName$$' -fuzztime $(FUZZTIME) ./internal/pluginname
	$(GO) test -run '^$$' -fuzz '^FuzzClassify$$' -fuzztime $(FUZZTIME) ./gateway
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) ./config

# Runs the escape suite on every tier and writes SECURITY-REPORT.md and
# the table at the end of SECURITY.md (hack/security-report.sh). The same
# suite runs in `make test`.
security-report: test-deps
	GO=$(GO) hack/security-report.sh

vet:
	$(GO) vet ./...

# staticcheck, installed once per machine and version (hack/build-staticcheck.sh).
staticcheck:
	"$$(hack/build-staticcheck.sh)" ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

clean:
	rm -rf bin

# The speed table: each figure against its anchor measured in the same
# run, and its goal (bench/run.sh; about 5 minutes on 2 cores). Prints it
# and writes it, with the date and the machine, to bench/results.md.
bench: test-deps
	GO=$(GO) bench/run.sh
