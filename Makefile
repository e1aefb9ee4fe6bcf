# The two commands a newcomer needs: `make demo` runs raftvip, `make test` runs
# every test (installing what the tests need first).
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(dir $(GO)):$(HOME)/go/bin:$(PATH)

.PHONY: build demo test race torture mutants deps lint bench fuzz clean

# Packages whose tests run in-process (no namespaces): the race detector
# runs over them in make test.
RACE_PKGS = ./store/... ./api/... ./consensus/... ./healthz/... ./haproxy/... ./announce/... ./client/...

build:
	$(GO) build -o bin/raftvip ./cmd/raftvip

demo: build
	./bin/raftvip demo

deps:
	./scripts/deps.sh

lint:
	test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt would change the files above"; exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# The fault suite runs on its own, after the other packages: beside them it
# would take their cores and skew the timing figures some of them check.
test: deps lint build race fuzz
	$(GO) test -count=1 -timeout 20m $$($(GO) list ./... | grep -v /test/fault)
	$(GO) test -count=1 -timeout 15m ./test/fault

race:
	$(GO) test -race -count=1 -timeout 10m $(RACE_PKGS)

# The fault suite with new seeds until DURATION is up (make test runs its
# fixed seeds). A failing seed says where its history and logs are.
DURATION ?= 10m
torture: deps
	$(GO) test -count=1 -timeout 0 -v ./test/fault -run TestFaults -args -fault.total $(DURATION)

# Deliberately broken builds that the fault suite must catch.
mutants: deps
	./scripts/mutants.sh

bench: build
	./bench/writes.sh

# Every decoder that sees outside bytes has a fuzz target; make test runs
# each for FUZZTIME (make fuzz FUZZTIME=10m for a longer look). A count, not a
# duration, by default: Go 1.26's fuzz coordinator can fail a duration run at
# its deadline with no crasher (go.dev/issue/75804, fixed in Go 1.27).
FUZZ_TARGETS = ./store:FuzzCheckJSON ./store:FuzzMergePatch ./store:FuzzDecode \
	./consensus:FuzzParseHAState ./consensus:FuzzParseToken \
	./cmd/raftvip:FuzzParseIntroduction ./cmd/raftvip:FuzzParseConfigFile
FUZZTIME ?= 20000x
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} ($${t%%:*}) for $(FUZZTIME)"; \
		$(GO) test $${t%%:*} -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) -parallel 2 >/tmp/raftvip-fuzz.log 2>&1 || { cat /tmp/raftvip-fuzz.log; exit 1; }; \
	done

clean:
	rm -rf bin
