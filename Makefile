# The two commands a newcomer needs: `make demo` runs raftvip, `make test` runs
# every test (installing what the tests need first).
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(dir $(GO)):$(HOME)/go/bin:$(PATH)

.PHONY: build demo test deps lint bench fuzz clean

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

test: deps lint build
	$(GO) test -count=1 -timeout 20m ./...

bench: build
	./bench/writes.sh

fuzz:
	$(GO) test ./store -run '^$$' -fuzz FuzzDecode -fuzztime 60s

clean:
	rm -rf bin
