# klagg: see README.md. Every target works on a clean clone with Go 1.26.
GO          ?= go
BIN         := bin/klagg
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME    ?= 10s
PKGS        := ./...

.PHONY: build run demo test check bench fuzz profile clean

build:
	$(GO) build -o $(BIN) ./cmd/klagg

# The main job on embedded defaults: the daemon follows every USD-M futures symbol on
# Binance, stores its klines in data/klagg.db (SQLite) and serves them, Binance's way,
# on http://127.0.0.1:8080 (Ctrl-C stops it cleanly; a restart resumes).
run: build
	./$(BIN) run

# Offline: a synthetic feed klagg generates itself, through the real pipeline, to out/demo.
demo: build
	./$(BIN) demo

# The whole suite: race detector, shuffled order, invariant checks compiled in.
test:
	$(GO) test -race -shuffle=on -tags invariants -timeout 20m $(PKGS)
	$(GO) test -race -tags 'invariants purego' ./store/

check:
	@out=$$(gofmt -s -l . | grep -v '^vendor/'); if [ -n "$$out" ]; then echo "gofmt -s would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) vet -tags invariants $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)
	$(GO) mod tidy -diff

# Micro benchmarks side by side (parse engines, ring vs channel vs Workiva, shard), then
# the end-to-end benchmark against the naive baseline.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./parse ./ring ./shard ./bench
	./$(BIN) bench --json --duration 10s

# Short, bounded fuzzing of every Fuzz target of every package, invariant checks on
# (go test -fuzz takes one target at a time). Tests that do not compile fail the
# target instead of hiding their fuzzers.
fuzz:
	@targets=$$($(GO) test -tags invariants -list '^Fuzz' $(PKGS) 2>&1) || { echo "$$targets"; exit 1; }; \
	echo "$$targets" | awk '/^Fuzz/ { names = names " " $$1 } /^ok / { if (names != "") print $$2 names; names = "" }' | \
	while read -r pkg names; do \
		for t in $$names; do \
			echo "fuzz $$pkg $$t for $(FUZZTIME)"; \
			$(GO) test -tags invariants -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

# CPU and allocation profiles of the end-to-end benchmark.
profile: build
	./$(BIN) bench --duration 5s --cpuprofile cpu.pprof --memprofile mem.pprof
	$(GO) tool pprof -top -nodecount 25 $(BIN) cpu.pprof
	@echo
	@echo "explore: go tool pprof -http :8081 $(BIN) cpu.pprof"
	@echo "         go tool pprof -sample_index alloc_space -http :8082 $(BIN) mem.pprof"

clean:
	rm -rf bin out cpu.pprof mem.pprof
