# pfw — personal firewall. `make run` builds and runs pfwd in the
# foreground with the default config; `make test` runs every test (the
# kernel ones need root and create their own network namespaces).

PREFIX   ?= /usr/local
DESTDIR  ?=
BINDIR   ?= $(PREFIX)/bin
UNITDIR  ?= $(shell pkg-config systemd --variable=systemdsystemunitdir 2>/dev/null || echo /lib/systemd/system)
CONFDIR  ?= /etc/personal-firewall
GO       ?= go
GOFLAGS  ?=
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/pfw/pfw/daemon.Version=$(VERSION)

export PATH := $(PATH):/usr/local/go/bin

.PHONY: all build test test-short bench run clean fuzz vet

all: build

build:
	$(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o bin/pfwd ./cmd/pfwd
	$(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o bin/fwctl ./cmd/fwctl

vet:
	$(GO) vet ./...

# Every test; as root this includes the end-to-end tests in network
# namespaces (they skip with a message otherwise).
test: build vet
	$(GO) test $(GOFLAGS) -count=1 -timeout 20m ./...

test-short:
	$(GO) test $(GOFLAGS) -short ./...

# The benchmarks users care about, each beside its baseline.
bench: build
	$(GO) test $(GOFLAGS) -run '^$$' -bench . -benchmem -benchtime 1s ./verdict/ ./store/ ./intel/ ./nft/

# Fuzz every parser of untrusted bytes for FUZZTIME each.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./verdict/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./rules/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./intel/

# Build and run the daemon in the foreground with the default paths (the
# default config is written on first start). Needs root: it installs an
# nftables table and reads packets from NFQUEUE. Ctrl-C removes the table.
run: build
	@if [ "$$(id -u)" != 0 ]; then echo "make run: pfwd needs root (netfilter); try: sudo make run" >&2; exit 1; fi
	./bin/pfwd

clean:
	rm -rf bin
