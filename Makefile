# The README's two commands (both as root on Debian 12):
#   make run    install missing packages, build, start cytod in the foreground on its defaults
#   make test   install missing packages, build, run every test (unit tests under ASan/UBSan
#               with a short fuzz pass, then integration)
# Other targets: build, unit, bench, sanitize (unit tests under ASan/UBSan and a short pass
#   of every libFuzzer target, one clang tree), fuzz (the libFuzzer targets of tests/fuzz,
#   FUZZ_SECONDS each, same tree), clean,
#   pki (a CA, this host's node certificate and a user 'admin' in deploy/pki/),
#   install (binaries, demo image, config, units, man pages, completion under PREFIX,
#   default /usr/local; the config always at /etc/cyto/cytod.toml, never overwritten),
#   deb (build/package/cyto_<version>_amd64.deb through CPack, for /usr).

BUILD_DIR  ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS       ?= $(shell nproc)
ARGS       ?=

.PHONY: all deps configure build run test unit bench asan-configure sanitize fuzz clean pki install deb

all: build

deps:
	./deploy/install-deps

# Ninja: faster no-op and incremental builds, and .ninja_log records each step's time.
GENERATOR  ?= Ninja

configure: deps
	cmake -S . -B $(BUILD_DIR) -G $(GENERATOR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

# What install and deb ship: only these need building.
PACKAGED = cytod cyto cyto-runtime demo_image completions man_pages
PREFIX  ?= /usr/local

install: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target $(PACKAGED)
	cmake --install $(BUILD_DIR) --prefix $(PREFIX)

deb: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target $(PACKAGED)
	cd $(BUILD_DIR) && cpack -G DEB
	@ls -1 $(BUILD_DIR)/package/*.deb

run: build
	$(BUILD_DIR)/cytod $(ARGS)

# Unit tests under ASan/UBSan and a short fuzz pass first, then every test; ctest's full
# summary comes last.
# The unit tests run once, under the sanitizers, in their own tree, which builds while the
# integration tests of the normal tree run (tests/run-all); both summaries come last.
test: build asan-configure
	tests/run-all $(BUILD_DIR) $(ASAN_DIR) $(FUZZ_SECONDS)

unit: build
	cmake --build $(BUILD_DIR) -j $(JOBS) --target unit_tests
	tests/run-ctest $(BUILD_DIR) -L unit

bench: build
	cmake --build $(BUILD_DIR) -j $(JOBS) --target benches
	$(BUILD_DIR)/rpc_bench $(ARGS)

# One clang tree (build-asan/) for both: every library under ASan + UBSan with libFuzzer's
# coverage; the unit tests run there, then each libFuzzer target for FUZZ_SECONDS on a copy
# of its seed corpus in tests/fuzz/corpus/ (one JSON line of figures per target).
ASAN_DIR     ?= $(BUILD_DIR)-asan
FUZZ_SECONDS ?= 4
asan-configure: deps
	cmake -S . -B $(ASAN_DIR) -G $(GENERATOR) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-g1 \
	  -DCYTO_SANITIZE=ON -DCYTO_BUILD_BENCH=OFF -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++

sanitize: asan-configure
	cmake --build $(ASAN_DIR) -j $(JOBS) --target unit_tests fuzz_targets
	tests/run-ctest $(ASAN_DIR) -L unit
	tests/fuzz/run $(ASAN_DIR) $(FUZZ_SECONDS)

fuzz: asan-configure
	cmake --build $(ASAN_DIR) -j $(JOBS) --target fuzz_targets
	tests/fuzz/run $(ASAN_DIR) $(FUZZ_SECONDS)

# deploy/make-pki into deploy/pki/ (git-ignored): CA, node `hostname`, user admin; keeps what
# exists. Prints the config lines that use it. More: deploy/make-pki deploy/pki --user ci ...
PKI_DIR   ?= deploy/pki
PKI_NODE  ?= $(shell hostname)
PKI_USERS ?= admin
pki:
	./deploy/make-pki $(PKI_DIR) --node $(PKI_NODE) $(foreach u,$(PKI_USERS),--user $(u))
	@d=$$(realpath $(PKI_DIR)); \
	 if [ ! -e $$d/policy.toml ]; then \
	   printf '%s\n' '# Who may call what over the TCP gateway (gateway.policy).' \
	     '[allow]' '"spiffe://cyto.local/user/admin" = ["*"]' >$$d/policy.toml; fi; \
	 echo; echo "# cytod.toml: the mutual-TLS TCP gateway"; \
	 echo "[gateway]"; \
	 echo "tcp = \"0.0.0.0:7443\""; \
	 echo "tls_cert = \"$$d/nodes/$(PKI_NODE).crt\""; \
	 echo "tls_key = \"$$d/nodes/$(PKI_NODE).key\""; \
	 echo "tls_ca = \"$$d/ca.crt\""; \
	 echo "policy = \"$$d/policy.toml\""; \
	 echo; echo "# the CLI as user admin:"; \
	 echo "cyto --connect $(PKI_NODE):7443 --cert $$d/users/admin.crt --key $$d/users/admin.key --ca $$d/ca.crt discover"

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(BUILD_DIR)-fuzz
