# fledge — build, test, demo and benchmark. `make help` lists the targets.
CC      ?= cc
PKGS    := libuv yaml-0.1 jansson libmaxminddb sqlite3 libcurl hiredis openssl
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c17 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter -pthread -MMD -MP $(EXTRA_CFLAGS)
LDLIBS  += -lm -ldl -pthread
BUILD   := build

SRC      := $(wildcard src/*.c)
LIB_SRC  := $(filter-out src/main.c,$(SRC))
LIB_OBJ  := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/ui_assets.o
UI_FILES := $(wildcard src/ui/*)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
FAKE_NVML := $(BUILD)/tests/libfake-nvml.so
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

DEPS_OK := $(BUILD)/.deps-ok
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

.PHONY: all test unit e2e demo bench soak soak-rollouts sim asan fuzz clean help deps modules testssl

all: $(BUILD)/fledge

help:
	@echo "make            build build/fledge"
	@echo "make test       build and run every unit and end-to-end test"
	@echo "make modules    the module graph of src/ from its includes: any cycle fails (make test runs it)"
	@echo "make demo       two mock versions, the gateway, load, and a rollout told as it goes (SCENARIO=bad: a rollback)"
	@echo "make bench      fledge vs nginx vs HAProxy on this machine (wrk)"
	@echo "make soak       SOAK_SECONDS (600) of mixed, faulty traffic, weight changes, reloads: RSS, fds"
	@echo "make soak-rollouts  20 full rollouts of two identical versions: none may be rolled back"
	@echo "make testssl    testssl.sh against a TLS listener: no old protocol, no weak cipher offered"
	@echo "make sim        SIM_ROLLOUTS (10,000) simulated rollouts a row through the real judgement: false rollbacks, detection"
	@echo "make asan       every test on an AddressSanitizer + UBSan build (clang); any report fails"
	@echo "make fuzz       each libFuzzer target (or FUZZ_TARGETS) for FUZZ_SECONDS (default 60); crashes kept"
	@echo "make clean      remove build/"

# Installs missing Debian packages once; the stamp keeps later builds quiet.
$(DEPS_OK): scripts/install-deps.sh
	@scripts/install-deps.sh
	@mkdir -p $(BUILD) && touch $@
deps: $(DEPS_OK)

$(BUILD)/obj/%.o: src/%.c | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

# The dashboard's files (src/ui/) as a C table (ui.h), generated into the build directory.
$(BUILD)/gen/ui_assets.c: $(UI_FILES) scripts/embed_ui.py
	@mkdir -p $(dir $@)
	python3 scripts/embed_ui.py src/ui $@

$(BUILD)/obj/ui_assets.o: $(BUILD)/gen/ui_assets.c src/ui.h | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc -c $< -o $@

$(BUILD)/libfledge.a: $(LIB_OBJ)
	ar rcs $@ $^

$(BUILD)/fledge: $(BUILD)/obj/main.o $(BUILD)/libfledge.a
	$(CC) $(CFLAGS) -o $@ $^ $(PKG_LIBS) $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libfledge.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -Isrc -o $@ $< $(BUILD)/libfledge.a $(PKG_LIBS) -lcmocka $(LDLIBS)

# The fuzz targets, compiled in for replaying their kept inputs (tests/fuzz/fuzz.h).
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
$(BUILD)/tests/test_fuzz_replay: tests/unit/test_fuzz_replay.c $(FUZZ_SRC) $(BUILD)/libfledge.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -Isrc -DFL_FUZZ_REPLAY -o $@ $< $(FUZZ_SRC) $(BUILD)/libfledge.a $(PKG_LIBS) -lcmocka $(LDLIBS)

# A stand-in libnvidia-ml.so with NVML's signatures for the GPU tests.
$(FAKE_NVML): tests/unit/fake_nvml.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -shared -fPIC -o $@ $<
$(BUILD)/tests/test_gpu: $(FAKE_NVML)

# The SDKs the end-to-end tests drive fledge with (the official openai package), from npm at the
# versions tests/e2e/node/package-lock.json pins; in build/node whatever BUILD is.
NODE_SDK := build/node/node_modules/openai/package.json
$(NODE_SDK): tests/e2e/node/package.json tests/e2e/node/package-lock.json
	@mkdir -p build/node
	cp tests/e2e/node/package.json tests/e2e/node/package-lock.json build/node/
	cd build/node && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

unit: $(UNIT_BIN)
test: $(BUILD)/fledge $(UNIT_BIN) $(FAKE_NVML) $(NODE_SDK)
	@tests/run.sh

# src/'s module graph (scripts/deps.py): lower layers never include higher ones; a cycle fails.
modules:
	@python3 scripts/deps.py

SCENARIO ?= good
demo: $(BUILD)/fledge
	@SCENARIO=$(SCENARIO) scripts/demo.sh

bench: $(BUILD)/fledge
	@bench/run.sh

# Mixed traffic, faulty backends, weight changes and reloads for SOAK_SECONDS: memory, descriptors.
SOAK_SECONDS ?= 600
soak: $(BUILD)/fledge
	@SOAK_SECONDS=$(SOAK_SECONDS) python3 tests/soak.py

# Whole rollouts simulated through the real judgement (tests/unit/test_rollout_sim.c); make test
# runs 1,000 a row (make asan 100), this SIM_ROLLOUTS.
SIM_ROLLOUTS ?= 10000
sim: $(BUILD)/tests/test_rollout_sim
	@FLEDGE_SIM_ROLLOUTS=$(SIM_ROLLOUTS) $(BUILD)/tests/test_rollout_sim

# Two identical versions must be promoted every time: the rollout's false-alarm check, live.
# testssl.sh's look at a TLS listener (about a minute): no old protocol, no weak cipher offered.
testssl: $(BUILD)/fledge
	@cd tests/e2e && FLEDGE=$(CURDIR)/$(BUILD)/fledge python3 tls_audit.py

soak-rollouts: $(BUILD)/fledge
	@python3 tests/e2e/run.py --repeat 20 test_a_healthy_canary_is_promoted_through_every_step

# The same suite on a sanitizer build in build/asan; tests/asan.sh fails on any report, leaks too.
SAN_FLAGS := -DFL_CHECKS -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
asan: $(DEPS_OK) $(NODE_SDK)
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/asan CC=clang EXTRA_CFLAGS="$(SAN_FLAGS)" \
	  $(BUILD)/asan/fledge $(UNIT_BIN:$(BUILD)/%=$(BUILD)/asan/%)
	@tests/asan.sh $(BUILD)/asan

# libFuzzer targets (tests/fuzz/fuzz_*.c) over a library built for coverage and sanitizers.
FUZZ_SECONDS ?= 60
FUZZ_FLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
fuzz: $(DEPS_OK)
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/fuzz CC=clang EXTRA_CFLAGS="$(FUZZ_FLAGS)" $(BUILD)/fuzz/libfledge.a
	@for t in $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%); do \
	  clang -O1 -g -std=c17 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Isrc \
	    $(PKG_CFLAGS) -o $(BUILD)/fuzz/fuzz_$$t tests/fuzz/fuzz_$$t.c $(BUILD)/fuzz/libfledge.a $(PKG_LIBS) $(LDLIBS) \
	    || exit 1; \
	done
	@tests/fuzz/run.sh $(BUILD)/fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf $(BUILD)

-include $(wildcard $(BUILD)/obj/*.d)
