# Tether build. `make test` is what CI runs on a fresh machine.
GO      ?= go
GOBIN   := $(shell $(GO) env GOPATH)/bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION) -X github.com/tether-dev/tether/internal/agentproto.Version=$(VERSION)
# The agent image is tagged with the version (internal/agentproto.Image).
AGENT_IMAGE := tether/agent:$(shell printf %s '$(VERSION)' | tr -c 'A-Za-z0-9_.-' '_')
FUZZTIME ?= 5s

.PHONY: all build deps images test vet fuzz-short fuzz lint bench demo demo-ide clean test-vscode test-intellij

all: build

build:
	@command -v javac >/dev/null || { echo "build: installing a JDK (the Java agent is built with javac)"; apt-get install -y -qq openjdk-17-jdk-headless >/dev/null; }
	./scripts/javaagent.sh
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/tether ./cmd/tether
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/tether-agent ./cmd/tether-agent

deps:
	./scripts/deps.sh

# The agent image (FROM scratch + the static tether-agent): the Kubernetes
# agent pod's image, tagged with the version, and the Docker-mode sidecar
# (tether/agent:local; tether also builds it on first use from the
# tether-agent next to it).
images: build
	rm -rf bin/image && mkdir -p bin/image && cp bin/tether-agent images/agent/Dockerfile bin/image/
	DOCKER_BUILDKIT=0 docker build -q -t $(AGENT_IMAGE) -t tether/agent:local bin/image
	@echo "agent image: $(AGENT_IMAGE)"

# Static checks (also over the test-only build), unit and integration tests
# (real binaries, sockets, sshd in namespaces) with the race detector, then
# the IDE clients against the real backend (IntelliJ core; VS Code extension
# inside a real code-server), then every fuzz target of the module briefly.
test: deps build vet
	$(GO) test -race -count=1 -timeout 45m ./...
	$(MAKE) test-intellij
	$(MAKE) test-vscode
	$(MAKE) fuzz-short

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags tethertest ./...
	$(GOBIN)/staticcheck ./...
	$(GOBIN)/staticcheck -tags tethertest ./...

# Every `func FuzzXxx` in the module (discovered, see scripts/fuzz.sh).
fuzz-short:
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

fuzz:
	$(MAKE) fuzz-short FUZZTIME=2m

lint: deps vet

# Tether against OpenSSH ssh -D through the same sshd in the same run
# (bench/), and the backend's start-up figures (e2e/).
bench: deps build
	$(GO) test -run='^$$' -bench=. -benchtime=1x -count=1 -timeout 30m ./bench/ ./e2e/ ./calls/

# The main job: a sandbox cloud (tether-agent as an SSH proxy machine on
# loopback) and the sample Java app launched through it with interconnect.
demo: build
	./scripts/demo.sh

# An IDE-like client driving a real `tether serve` on stdio.
demo-ide: build
	$(GO) run ./examples/ideclient -tether bin/tether

clean:
	rm -rf bin

# The VS Code extension: node --test against tether serve, then the packaged
# extension inside a real code-server driven by chromium (ide/vscode/test.sh;
# installs node 24, code-server and chromium into /var/cache/tether on first run).
test-vscode: build
	./ide/vscode/test.sh

# The IntelliJ client core (plain Java, Debian gson + junit5) against tether serve.
test-intellij: build
	./ide/intellij/test.sh
