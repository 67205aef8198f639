# Ronin — every command a developer or CI needs. Only Go is required.
GO       ?= go
TIMEOUT  ?= 20m
CHAOS_DURATION ?= 10m
CHAOS_OUT ?= out/chaos
CHAOS_SEED ?= 0
# The bounded, fixed-seed slice that `make test` (and so CI) runs.
CHAOS_CI_DURATION ?= 3m
CHAOS_CI_SEED ?= 1

# The simulator's fixed-seed slice that `make test` runs; raise it for a soak.
SIM_SCENARIOS ?= 1200
SIM_SEED ?= 1
# SIM_FOCUS=purge (or slow, partition, pause, suspend, crash, delete, observer) makes half the
# faults of one kind; rotate (the default) cycles through them seed by seed.
SIM_FOCUS ?= rotate

.PHONY: all test unit vet fmt demo example fenced bench chaos chaos-ci sim mutate clean

all: vet test

## test: vet, every test with the race detector, then a fixed-seed chaos
## slice (skipped with a message where there is no root/netns). CI runs this.
test: vet
	bash scripts/install-chromium.sh
	$(GO) test -race -count=1 -timeout $(TIMEOUT) ./...
	cd integration/chaos && $(GO) test -race -count=1 ./...
	cd deploy && $(GO) test -count=1 ./...
	$(MAKE) sim
	$(MAKE) chaos-ci

## sim: the protocol's real code against the in-memory store in virtual
## time, SIM_SCENARIOS seeded fault schedules from SIM_SEED, under -race.
## A failure prints its seed, a replay command and a trace.
sim:
	@mkdir -p out
	$(GO) test -race -count=1 -v -timeout 60m -run TestSim ./internal/sim -sim.scenarios $(SIM_SCENARIOS) -sim.seed $(SIM_SEED) -sim.focus=$(SIM_FOCUS) > out/sim.log 2>&1; rc=$$?; \
	  grep -v '^scenarios:' out/sim.log; grep '^scenarios:' out/sim.log; exit $$rc

## unit: the pure-logic tests only (no servers), in seconds.
unit:
	$(GO) test -count=1 ./balancer/ ./election/ ./shard/ ./worker/ ./internal/engine/ ./internal/backoff/ ./internal/status/ ./internal/sim/ ./internal/store/memstore/
	cd integration/chaos && $(GO) test -count=1 ./...

vet:
	$(GO) vet ./...
	cd integration/chaos && $(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)

fmt:
	gofmt -w $$(git ls-files '*.go')

## demo: the main job — a local 3-node cluster, 16 shards, a node killed and restarted.
demo:
	$(GO) run ./examples/shards-demo

## example: the spec's minimal election example (Ctrl-C to stop).
example:
	$(GO) run ./examples/minimal

## fenced: fenced downstream writes refusing a stale owner.
fenced:
	$(GO) run ./examples/fenced

## bench: benchmark programs; print tables with the machine. The bench is a
## module of its own (etcd baseline); pass flags with BENCH_FLAGS, e.g.
## BENCH_FLAGS="-only=etcd,handover,crash,keys,alt -keys=5000,10000".
bench:
	cd integration/bench && $(GO) run . $(BENCH_FLAGS)

## chaos: multi-process fault suite in network namespaces (root, Linux).
## CHAOS_SEED=0 draws a seed (printed, with the replay command).
chaos:
	bash integration/chaos/setup.sh
	cd integration/chaos && $(GO) run . -duration $(CHAOS_DURATION) -seed $(CHAOS_SEED) -out $(CURDIR)/$(CHAOS_OUT)

## chaos-ci: the slice `make test` runs; fails on any violation.
chaos-ci:
	bash integration/chaos/setup.sh
	cd integration/chaos && $(GO) run . -duration $(CHAOS_CI_DURATION) -seed $(CHAOS_CI_SEED) -out $(CURDIR)/out/chaos-ci

## mutate: remove each guard of the protocol in turn from a copy of the
## module and show which test catches it (table, then "caught: K/N").
mutate:
	$(GO) run ./internal/mutate

clean:
	rm -rf out bin
