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
LDFLAGS  := -X github.com/pfw/pfw/daemon.Version=$(VERSION) -X main.version=$(VERSION)

# Go from go.dev first: a distribution's older go in /usr/bin must not win.
export PATH := /usr/local/go/bin:$(PATH)

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

# The benchmarks users care about: the Go micro-benchmarks (decode+decide,
# prefix sets, rate limiter, store rows/s, feed parsing, set updates, the
# queue path), then the load benchmark, which runs real traffic through
# namespaces with and without pfwd and prints each figure beside that
# baseline (root; about four minutes).
bench: build
	$(GO) test $(GOFLAGS) -run '^$$' -bench . -benchmem -benchtime 1s ./verdict/ ./store/ ./intel/ ./nft/ ./queue/
	$(GO) test $(GOFLAGS) -run '^$$' -bench '^BenchmarkLoad$$' -benchtime 1x -timeout 10m ./cmd/pfwd/

# Fuzz every parser of untrusted bytes for FUZZTIME each: packets (the
# decoder, the NFQUEUE messages and datagrams, NFLOG drops, the nftables
# ruleset generation), the config and its values, the threat feeds and
# their HTTP answers and redirects, resolv.conf, the control socket's
# answers, the database rows fwctl reads, pfwd's file of cut flows, and
# fwctl's own arguments. 19 targets at 12 s each, builds included, take
# about four minutes on two cores; FUZZTIME=1m or more for a longer hunt.
# dist/fuzz.sh runs them and tells a failing input from a known Go 1.26
# fuzzing-coordinator flake.
FUZZTIME ?= 12s
fuzz:
	GO=$(GO) ./dist/fuzz.sh $(FUZZTIME) \
		verdict FuzzDecode \
		queue FuzzParsePacket queue FuzzCollect queue FuzzKernelDropReason \
		nft FuzzParseGeneration \
		rules FuzzParse rules FuzzParsePortRange rules FuzzParsePrefix rules FuzzParseFeedURL rules FuzzCheckRuleName \
		intel FuzzParse intel FuzzFetch intel FuzzRefuseLocalRedirect intel FuzzReadResolvers \
		control FuzzQuery \
		store FuzzLenientRows \
		daemon FuzzParseCutLine \
		cmd/fwctl FuzzParseSince cmd/fwctl FuzzRuleFromFlags

# Build and run the daemon in the foreground with the default paths (the
# default config is written on first start). Needs root: it installs an
# nftables table and reads packets from NFQUEUE. Ctrl-C removes the table.
# Under sudo, bin/ is handed back to the user who ran it, so that a later
# `make test` or `make build` without sudo can write it.
run: build
	@if [ "$$(id -u)" != 0 ]; then echo "make run: pfwd needs root (netfilter); try: sudo make run" >&2; exit 1; fi
	@if [ -n "$$SUDO_UID" ]; then chown -R "$$SUDO_UID:$${SUDO_GID:-$$SUDO_UID}" bin; fi
	./bin/pfwd

clean:
	rm -rf bin

# --- install / uninstall ----------------------------------------------------
# `sudo make install` puts pfwd and fwctl in BINDIR, the systemd unit in
# UNITDIR (its paths set to BINDIR and CONFDIR), the directories of the
# contract's paths, and the default config — only when CONFDIR holds none:
# a user's rules are never overwritten. DESTDIR stages all of it for a
# package; only a real install (no DESTDIR) tells a running systemd.
# `make uninstall` removes the binaries and the unit, and keeps the config
# and the database (and the log, unless its directory is empty). A real
# uninstall also deletes pfw's nftables table: a pfwd run with
# --fail-closed leaves it behind on purpose when it stops, and with no pfwd
# left to take the queued packets the host would drop every new flow.
STATEDIR ?= /var/lib/personal-firewall
LOGDIR   ?= /var/log/personal-firewall
UNIT     := personal-firewall.service
NFT_TABLE := personal_firewall
INSTALLED_CONFIG = $(DESTDIR)$(CONFDIR)/firewall_rules.json

.PHONY: install uninstall

install: build
	install -d -m 0755 '$(DESTDIR)$(BINDIR)' '$(DESTDIR)$(UNITDIR)' '$(DESTDIR)$(CONFDIR)'
	install -d -m 0750 '$(DESTDIR)$(STATEDIR)' '$(DESTDIR)$(LOGDIR)'
	install -m 0755 bin/pfwd bin/fwctl '$(DESTDIR)$(BINDIR)/'
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@CONFDIR@|$(CONFDIR)|g' dist/$(UNIT) > bin/$(UNIT)
	install -m 0644 bin/$(UNIT) '$(DESTDIR)$(UNITDIR)/$(UNIT)'
	@if [ -e '$(INSTALLED_CONFIG)' ] || [ -L '$(INSTALLED_CONFIG)' ]; then \
		echo "install: keeping the existing $(INSTALLED_CONFIG)"; \
	else \
		echo "install -m 0644 rules/default.json $(INSTALLED_CONFIG)"; \
		install -m 0644 rules/default.json '$(INSTALLED_CONFIG)'; \
	fi
	@if [ -z '$(DESTDIR)' ] && [ -d /run/systemd/system ]; then \
		echo "systemctl daemon-reload"; systemctl daemon-reload; \
		echo "Installed. Start pfw now and at every boot: systemctl enable --now $(UNIT)"; \
	fi

uninstall:
	@if [ -z '$(DESTDIR)' ] && [ -d /run/systemd/system ] && [ -e '$(UNITDIR)/$(UNIT)' ]; then \
		echo "systemctl disable --now $(UNIT)"; systemctl disable --now $(UNIT) || true; \
	fi
	@if [ -z '$(DESTDIR)' ] && command -v nft >/dev/null 2>&1 && nft list table inet $(NFT_TABLE) >/dev/null 2>&1; then \
		echo "nft delete table inet $(NFT_TABLE)"; nft delete table inet $(NFT_TABLE) 2>/dev/null || true; \
	fi
	rm -f '$(DESTDIR)$(BINDIR)/pfwd' '$(DESTDIR)$(BINDIR)/fwctl' '$(DESTDIR)$(UNITDIR)/$(UNIT)'
	@if [ -d '$(DESTDIR)$(LOGDIR)' ]; then rmdir '$(DESTDIR)$(LOGDIR)' 2>/dev/null || echo "uninstall: kept $(DESTDIR)$(LOGDIR) (not empty)"; fi
	@if [ -z '$(DESTDIR)' ] && [ -d /run/systemd/system ]; then \
		echo "systemctl daemon-reload"; systemctl daemon-reload; \
	fi
	@echo "uninstall: kept $(DESTDIR)$(CONFDIR) (your rules) and $(DESTDIR)$(STATEDIR) (the log database)"

# --- demo -------------------------------------------------------------------
# A two-namespace sandbox that shows pfw blocking live traffic without
# touching the host's firewall, then cleans up (needs root).
.PHONY: demo

demo: build
	@if [ "$$(id -u)" != 0 ]; then echo "make demo: needs root (network namespaces, netfilter); try: sudo make demo" >&2; exit 1; fi
	dist/demo.sh "$(CURDIR)/bin"
