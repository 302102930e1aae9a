# Build flags live here so nobody has to remember them: a static binary
# (no cgo) with the pure-Go Matrix end-to-end encryption (goolm).
GO       ?= go
TAGS     := goolm
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 30s

.PHONY: build console test check fuzz bench docker clean

build:
	CGO_ENABLED=0 $(GO) build -tags $(TAGS) -trimpath -ldflags "$(LDFLAGS)" -o bin/vigie ./cmd/vigie

console:
	CGO_ENABLED=0 $(GO) run -tags $(TAGS) ./cmd/vigie console

# The whole suite, integration tests against real servers included.
test:
	./scripts/test.sh

# Fast checks without the servers.
check:
	gofmt -l . | tee /dev/stderr | (! read)
	CGO_ENABLED=0 $(GO) vet -tags $(TAGS) ./...
	CGO_ENABLED=0 $(GO) test -tags $(TAGS) -short ./...

fuzz:
	CGO_ENABLED=0 $(GO) test -tags $(TAGS) -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./commands/
	CGO_ENABLED=0 $(GO) test -tags $(TAGS) -run='^$$' -fuzz='^FuzzRender$$' -fuzztime=$(FUZZTIME) ./render/
	CGO_ENABLED=0 $(GO) test -tags $(TAGS) -run='^$$' -fuzz='^FuzzExcerpt$$' -fuzztime=$(FUZZTIME) ./render/
	CGO_ENABLED=0 $(GO) test -tags $(TAGS) -run='^$$' -fuzz='^FuzzLoad$$' -fuzztime=$(FUZZTIME) ./config/
	CGO_ENABLED=0 $(GO) test -tags $(TAGS) -run='^$$' -fuzz='^FuzzClosest$$' -fuzztime=$(FUZZTIME) ./internal/suggest/
	CGO_ENABLED=0 $(GO) test -tags $(TAGS) -run='^$$' -fuzz='^FuzzNomadFrame$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=2s ./watchers/
	CGO_ENABLED=0 $(GO) test -tags $(TAGS) -run='^$$' -fuzz='^FuzzNomadJSONValidity$$' -fuzztime=$(FUZZTIME) ./watchers/
	CGO_ENABLED=0 $(GO) test -tags $(TAGS) -run='^$$' -fuzz='^FuzzConsulSplit$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=2s ./watchers/
	CGO_ENABLED=0 $(GO) test -tags $(TAGS) -run='^$$' -fuzz='^FuzzRenderIncident$$' -fuzztime=$(FUZZTIME) ./incidents/
	CGO_ENABLED=0 $(GO) test -tags $(TAGS) -run='^$$' -fuzz='^FuzzParseClusterData$$' -fuzztime=$(FUZZTIME) ./stolon/
	CGO_ENABLED=0 $(GO) test -tags $(TAGS) -run='^$$' -fuzz='^FuzzParseManifest$$' -fuzztime=$(FUZZTIME) ./backups/
	CGO_ENABLED=0 $(GO) test -tags $(TAGS) -run='^$$' -fuzz='^FuzzManifest$$' -fuzztime=$(FUZZTIME) ./replica/
	CGO_ENABLED=0 $(GO) test -tags $(TAGS) -run='^$$' -fuzz='^FuzzCountArchiveRows$$' -fuzztime=$(FUZZTIME) ./backups/
	CGO_ENABLED=0 $(GO) test -tags $(TAGS) -run='^$$' -fuzz='^FuzzCheck$$' -fuzztime=$(FUZZTIME) ./internal/snaparchive/
	CGO_ENABLED=0 $(GO) test -tags $(TAGS) -run='^$$' -fuzz='^FuzzParseSums$$' -fuzztime=$(FUZZTIME) ./internal/snaparchive/

bench:
	CGO_ENABLED=0 $(GO) test -tags $(TAGS) -run='^$$' -bench=. -benchmem ./...

docker:
	docker build --build-arg VERSION=$(VERSION) -t vigie:$(VERSION) .

clean:
	rm -rf bin
