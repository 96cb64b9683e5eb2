# The README's two commands (both as root on Debian 12):
#   make run    install missing packages, build, start cytod in the foreground on its defaults
#   make test   install missing packages, build, run every test (unit tests also under
#               ASan/UBSan, then unit + integration)
# Other targets: build, unit, bench, sanitize (unit tests under ASan/UBSan), clean.

BUILD_DIR  ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS       ?= $(shell nproc)
ARGS       ?=

.PHONY: all deps configure build run test unit bench sanitize clean

all: build

deps:
	./deploy/install-deps

# Ninja: faster no-op and incremental builds, and .ninja_log records each step's time.
GENERATOR  ?= Ninja

configure: deps
	cmake -S . -B $(BUILD_DIR) -G $(GENERATOR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/cytod $(ARGS)

# Unit tests under ASan/UBSan first, then every test; ctest's full summary comes last.
test: build sanitize
	tests/run-ctest $(BUILD_DIR)

unit: build
	tests/run-ctest $(BUILD_DIR) -L unit

bench: build
	$(BUILD_DIR)/rpc_bench $(ARGS)

# Unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
sanitize: deps
	cmake -S . -B $(BUILD_DIR)-asan -G $(GENERATOR) -DCMAKE_BUILD_TYPE=Debug -DCYTO_SANITIZE=ON -DCYTO_BUILD_BENCH=OFF
	cmake --build $(BUILD_DIR)-asan -j $(JOBS) --target unit_tests
	tests/run-ctest $(BUILD_DIR)-asan -L unit

clean:
	rm -rf $(BUILD_DIR) $(BUILD_DIR)-asan
