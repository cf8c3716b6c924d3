# campaignd — common tasks. `make demo` runs the demo, `make test` the tests.
GO ?= go
BIN := bin

.PHONY: all build test vet fmt demo bench deps clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# deps installs what the tests and the demo need on Debian (redis-server).
deps:
	@command -v redis-server >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server; \
		else sudo apt-get update -qq && sudo apt-get install -y -qq redis-server; fi; }

test: deps
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed on:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

demo: deps build
	./scripts/demo.sh

bench: deps
	./scripts/bench.sh

clean:
	rm -rf $(BIN)
