# Outpost: build, run and test.
#
#   make run     install what is missing (apt-get), build, start Outpost
#   make test    install what is missing, build, run every test that runs here
#   make bench   benchmarks (docs/BENCHMARKS.md)
#
# Everything is built into build/ (release) and build/asan/ (ASan+UBSan).

SHELL := /bin/bash
.DEFAULT_GOAL := all

CC  ?= gcc
CXX ?= g++
# Debian's python3 has the modules the tests need (pytest, pydicom); a
# pyenv python3 earlier on PATH does not.
PYTHON := /usr/bin/python3

BUILD ?= build
VERSION := $(shell cat VERSION)

WARN      := -Wall -Wextra -Werror
CFLAGS    ?= -O2 -g
CXXFLAGS  ?= -O2 -g
# Where the uplink finds the web console's files unless [console] web_root
# says otherwise: the source tree here; a package sets its own.
WEB_ROOT ?= $(abspath services/console/web)
CPPFLAGS  += -D_GNU_SOURCE -DOP_VERSION='"$(VERSION)"' -DOP_WEB_ROOT='"$(WEB_ROOT)"' -Iservices
ALL_CFLAGS   = -std=c11 $(WARN) -pthread -fno-strict-aliasing $(CFLAGS)
# Debian's DCMTK headers need C++17.
ALL_CXXFLAGS = -std=c++17 $(WARN) -pthread $(CXXFLAGS)

# pkg-config dcmtk fails on Debian 12 (its .pc requires sndfile).
DCMTK_LIBS  := -ldcmnet -ldcmdata -loflog -lofstd

# --- libraries and programs -------------------------------------------------
#
# Each folder of services/ is one static library (its main.c aside); a
# program is its main.o and the libraries it uses, and the linker takes
# from them only the objects it needs (--as-needed drops the shared
# libraries it does not). The layers, lowest last (make check-style keeps
# the includes to them, scripts/check-layers):
#
#   dicom     -> common            the DCMTK shim, the one C++ (receiving,
#                                  parsing, and the C-STORE sender)
#   receiver  -> dicom -> common   outpost-receiver
#   console   -> uplink -> dicom -> common
#                                  outpost-uplink: the upload engine (STOW-RS
#                                  and C-STORE) and the operator's console it
#                                  hosts (uplink/main.c)
#   ctl       -> common            outpostctl
LIBS_common   := common
LIBS_dicom    := dicom common
LIBS_receiver := receiver dicom common
LIBS_uplink   := uplink dicom common
LIBS_console  := console uplink dicom common
LIBS_ctl      := ctl common

EXT_common   := -lsqlite3 -linih -lsodium -lsystemd -lm -pthread
# dcmjpeg, dcmjpls: the decoders the sender needs to convert a compressed
# instance for a peer that takes only uncompressed syntaxes.
EXT_dicom    := -ldcmjpeg -ldcmjpls $(DCMTK_LIBS)
EXT_receiver :=
EXT_uplink   := -luv -lmbedtls -lmbedx509 -lmbedcrypto -lhttp_parser -lcjson
EXT_console  := $(EXT_uplink)
EXT_ctl      := -lcjson
LDFLAGS ?=
ALL_LDFLAGS = -Wl,--as-needed $(LDFLAGS)

obj = $(patsubst %.c,$(1)/obj/%.o,$(filter %.c,$(2))) \
      $(patsubst %.cc,$(1)/obj/%.o,$(filter %.cc,$(2)))

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(ALL_CXXFLAGS) -MMD -MP -c $< -o $@

lib_objs = $(filter-out %/main.o,$(call obj,$(BUILD),$(wildcard services/$(1)/*.c services/$(1)/*.cc)))
lib_path = $(BUILD)/lib/lib$(1).a
# The archives and shared libraries of a layer and those below it.
link_libs = $(foreach l,$(LIBS_$(1)),$(call lib_path,$(l)))
link_ext  = $(sort $(foreach l,$(LIBS_$(1)),$(EXT_$(l))))
# C++ (the DCMTK shim) needs g++ to link: any program with the dicom layer.
linker = $(if $(filter dicom,$(LIBS_$(1))),$(CXX) $(ALL_CXXFLAGS),$(CC) $(ALL_CFLAGS))

define library
$(call lib_path,$(1)): $(call lib_objs,$(1))
	@mkdir -p $$(dir $$@)
	@rm -f $$@
	ar rcs $$@ $$^
endef
$(foreach l,common dicom receiver uplink console ctl,$(eval $(call library,$(l))))

$(BUILD)/outpost-receiver: $(BUILD)/obj/services/receiver/main.o $(call link_libs,receiver)
	$(call linker,receiver) $(ALL_LDFLAGS) $^ -o $@ $(call link_ext,receiver)

$(BUILD)/outpost-uplink: $(BUILD)/obj/services/uplink/main.o $(call link_libs,console)
	$(call linker,console) $(ALL_LDFLAGS) $^ -o $@ $(call link_ext,console)

$(BUILD)/outpostctl: $(BUILD)/obj/services/ctl/main.o $(call link_libs,ctl)
	$(call linker,ctl) $(ALL_LDFLAGS) $^ -o $@ $(call link_ext,ctl)

# --- unit tests (cmocka), one binary per module ----------------------------
#
# tests/unit/test_<module>.c tests services/<layer>/<module>.c and links
# that layer's libraries, and the tests' own helpers it calls (tests/unit/
# *.c that are not tests: fixtures, in one archive).

UNIT_SRC      := $(wildcard tests/unit/test_*.c)
UNIT_BINS     := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
# The tests' helpers, one archive: a test links the fixtures it calls.
FIXTURE_LIB   := $(BUILD)/lib/libunit.a
$(FIXTURE_LIB): $(call obj,$(BUILD),$(filter-out tests/unit/test_%,$(wildcard tests/unit/*.c)))
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^
# The layer of test_<module>[_<aspect>]: the folder of services/ that has
# <module>.c (the longest name that matches: test_spool_recover.c tests
# spool_recover.c if there is one, else spool.c).
layer_of = $(word 2,$(subst /, ,$(firstword $(wildcard services/*/$(1).c services/*/$(1).cc))))
drop_last = $(subst $(eval) ,_,$(wordlist 2,$(words $(subst _, ,$(1))),x $(subst _, ,$(1))))
module_layer = $(or $(call layer_of,$(1)),$(if $(findstring _,$(1)),$(call module_layer,$(call drop_last,$(1)))))
unit_layer = $(or $(call module_layer,$(patsubst test_%,%,$(1))),$(error tests/unit/$(1).c: no services/*/$(patsubst test_%,%,$(1)).c for it to test))

define unit_test
$(BUILD)/tests/$(1): $(BUILD)/obj/tests/unit/$(1).o $(FIXTURE_LIB) $(call link_libs,$(call unit_layer,$(1)))
	@mkdir -p $$(dir $$@)
	$(call linker,$(call unit_layer,$(1))) $(ALL_LDFLAGS) $$^ -o $$@ -lcmocka $(call link_ext,$(call unit_layer,$(1)))
endef
$(foreach t,$(patsubst tests/unit/%.c,%,$(UNIT_SRC)),$(eval $(call unit_test,$(t))))

# Test-only programs (tests/tools/): a layer's C API driven from the
# integration tests, never part of the production binaries.
TOOL_BINS := $(BUILD)/tests/dicom_send_cli $(BUILD)/tests/spool_fill $(BUILD)/tests/spool_claims
$(BUILD)/tests/dicom_send_cli: $(BUILD)/obj/tests/tools/dicom_send_cli.o $(call link_libs,dicom)
	@mkdir -p $(dir $@)
	$(call linker,dicom) $(ALL_LDFLAGS) $^ -o $@ $(call link_ext,dicom)
# spool_fill defines fsync() and fdatasync() (skipped unless --durable):
# -rdynamic so that the shared libsqlite3 calls them too, not libc's.
$(BUILD)/tests/spool_fill: $(BUILD)/obj/tests/tools/spool_fill.o $(call link_libs,common)
	@mkdir -p $(dir $@)
	$(call linker,common) $(ALL_LDFLAGS) -rdynamic $^ -o $@ $(call link_ext,common)
$(BUILD)/tests/spool_claims: $(BUILD)/obj/tests/tools/spool_claims.o $(call link_libs,common)
	@mkdir -p $(dir $@)
	$(call linker,common) $(ALL_LDFLAGS) $^ -o $@ $(call link_ext,common)

all: $(BUILD)/outpost-receiver $(BUILD)/outpost-uplink $(BUILD)/outpostctl $(UNIT_BINS) $(TOOL_BINS)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# --- dependencies -----------------------------------------------------------
#
# Debian 12 packages. Build: compilers and libraries. Test: the real peers.
DEPS_BUILD := gcc g++ make libdcmtk-dev libsqlite3-dev libinih-dev \
              libsodium-dev libcmocka-dev libuv1-dev libmbedtls-dev \
              libhttp-parser-dev libcjson-dev libsystemd-dev dpkg-dev
DEPS_TEST  := dcmtk sqlite3 python3 python3-pytest python3-pydicom \
              python3-numpy clang-format procps clang-14 libclang-rt-14-dev \
              orthanc orthanc-dicomweb nginx curl openssl python3-cryptography \
              python3-nacl python3-prometheus-client chromium chromium-driver nodejs \
              systemd
# Image: the appliance image's build and its qemu tests.
DEPS_IMAGE := mmdebstrap genimage grub-efi-amd64-bin ovmf qemu-system-x86 squashfs-tools \
              bmap-tools mtools dosfstools busybox-static kmod cpio e2fsprogs socat \
              util-linux rauc python3-pytest-xdist \
              swtpm swtpm-tools tpm2-tools
DEPS := $(DEPS_BUILD) $(DEPS_TEST) $(DEPS_IMAGE)

# Quick when everything is there: one dpkg-query, no apt-get.
deps:
	@missing=$$(dpkg-query -W -f='$${Package} $${db:Status-Status}\n' $(DEPS) 2>/dev/null \
	  | awk '$$2 != "installed" {print $$1}'; \
	  for p in $(DEPS); do dpkg-query -W $$p >/dev/null 2>&1 || echo $$p; done); \
	missing=$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' '); \
	if [ -n "$${missing// }" ]; then \
	  echo "deps: installing $$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q --no-install-recommends $$missing \
	    || { apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; }; \
	fi
	@# Debian's nodejs comes without npm (a build of Node that bundles it
	@# may be installed instead: then its npm is used).
	@command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -q --no-install-recommends npm
	@# playwright-core drives the browser tests: from the npm registry,
	@# the version pinned in tests/browser/package-lock.json.
	@[ -d tests/browser/node_modules/playwright-core ] || \
	  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error

# --- the Debian package --------------------------------------------------------

# out/outpost_<version>_<arch>.deb: the programs, the console's files, the
# systemd units and the appliance's default configuration (rootfs/deb/).
deb: all
	@scripts/make-deb $(BUILD) out

# --- the appliance image --------------------------------------------------------
#
# out/<board>/outpost-<version>-<board>.img (+ .bmap): Debian 12 packages
# (mmdebstrap, from Debian's mirror) and out/'s package, squashfs root
# slots A and B, data partition, GRUB for UEFI (firmware/build-image).

BOARD ?= qemu-x86_64
IMAGE = out/$(BOARD)/outpost-$(VERSION)-$(BOARD).img

# Update bundles are signed with KEYS/signing.{key,cert}.pem and the image
# trusts KEYS/keyring.pem. make keys makes a development set in keys/dev
# (not tracked; never commit a private key); a release gives KEYS=DIR.
KEYS ?= keys/dev

keys:
	@scripts/make-keys $(KEYS)

image: deps deb keys
	firmware/build-image $(BOARD) out/outpost_$(VERSION)_$$(dpkg --print-architecture).deb \
	  $(KEYS)/keyring.pem out/$(BOARD)

# out/outpost-<version>.raucb: the root slot of make image as a signed RAUC
# bundle (verity), for outpostctl update or a USB stick (docs/updates.md).
bundle: image
	firmware/build-bundle out/$(BOARD)/outpost-$(VERSION)-$(BOARD).rootfs.sqfs $(VERSION) \
	  $(KEYS) out/outpost-$(VERSION).raucb

# The image under qemu: boot, receive and upload, a power cut mid-push,
# provisioning from a USB stick and the console, the firewall; and the
# flashing tool against a file standing in for a disk (tests/image/).
# Two boxes at a time (pytest-xdist; one vCPU each), a test file to a box:
# the long update scenario (test_update.py) beside the rest.
IMAGE_JOBS ?= 2
test-image: image
	cd tests/image && OUTPOST_IMAGE=$(abspath $(IMAGE)) OUTPOST_KEYS=$(abspath $(KEYS)) \
	  $(PYTHON) -m pytest -q -p no:cacheprovider -n $(IMAGE_JOBS) --dist loadfile $(PYTEST_ARGS)

# Boots the image under qemu (TCG, OVMF; serial console here; guest ports
# 104 and 8080 on 127.0.0.1:11104 and :18080). Writes go to the image.
qemu:
	firmware/qemu $(IMAGE)

# outpost-flash, the field engineer's flashing tool, on a laptop (not the
# box): needs python3, bmap-tools and e2fsprogs (docs/flash.md).
PREFIX ?= /usr/local
install-flash:
	install -D -m 755 firmware/flash $(DESTDIR)$(PREFIX)/bin/outpost-flash
	install -D -m 644 docs/flash.md $(DESTDIR)$(PREFIX)/share/doc/outpost-flash/flash.md

# --- run ---------------------------------------------------------------------

run: deps all
	@scripts/run-dev $(BUILD)

# --- tests -------------------------------------------------------------------

ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=all

unit: all
	@scripts/run-unit $(UNIT_BINS)

# The programs and unit tests built with ASan and UBSan, in $(BUILD)/asan.
asan:
	$(MAKE) --no-print-directory BUILD=$(BUILD)/asan \
	  CFLAGS="$(ASAN_FLAGS)" CXXFLAGS="$(ASAN_FLAGS)" all

unit-asan: asan
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  scripts/run-unit $(patsubst $(BUILD)/%,$(BUILD)/asan/%,$(UNIT_BINS))

# The integration tests, INTEGRATION_JOBS at a time (pytest-xdist): most of
# their time is spent waiting on the programs and peers they drive (on 2
# cores, 4 workers keep them about 60 % busy, 2 kept them 38 %), and
# each test has its own directory, processes and ports (free_port()
# reserves ports machine-wide, tests/lib/outpost.py). A test file to a
# worker (--dist loadfile): a module's fixtures (one cloud for
# test_uplink_tls.py, ...) are made once, and a file's tests run in their
# order, as they do alone. INTEGRATION_JOBS=1 runs them in this process,
# one after another.
INTEGRATION_JOBS ?= 4
XDIST = $(if $(filter-out 1,$(INTEGRATION_JOBS)),-n $(INTEGRATION_JOBS) --dist loadfile)

integration: all
	cd tests/integration && OUTPOST_BUILD=$(abspath $(BUILD)) \
	  $(PYTHON) -m pytest -q -p no:cacheprovider $(XDIST) $(PYTEST_ARGS)

# The integration tests that feed the services hostile or unusual input,
# run again against the ASan+UBSan build (any sanitizer report fails).
# The longest files first, so that the workers end together (conftest.py
# puts those it knows as longest first, then these in this order).
ASAN_INTEGRATION := test_api.py test_uplink_tls.py test_uplink_faults.py test_dicom_send.py \
                    test_garbage.py test_outpostctl.py test_admission.py \
                    test_samples.py test_firmware_upload.py test_limits.py \
                    test_receiver_basics.py test_routing.py test_destination_faults.py \
                    test_destination_operator.py test_spool_upgrade.py test_compression.py \
                    test_query_retrieve.py \
                    test_storage_commitment.py::test_same_association_report_and_unknown_instance \
                    test_storage_commitment.py::test_malformed_request_is_refused

integration-asan: asan
	cd tests/integration && OUTPOST_BUILD=$(abspath $(BUILD)/asan) \
	  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(PYTHON) -m pytest -q -p no:cacheprovider $(XDIST) $(ASAN_INTEGRATION) $(PYTEST_ARGS)

# --- fuzzing (libFuzzer, clang-14) ------------------------------------------
#
# What the uplink parses from the network: the cloud's responses and the
# console's requests. `make test` fuzzes each for a bounded time from its
# seed corpus; `make fuzz` longer (FUZZ_SECONDS).

FUZZ_CC      := clang-14
FUZZ_FLAGS   := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_SECONDS ?= 600

$(BUILD)/fuzz/fuzz_response: tests/fuzz/fuzz_response.c services/uplink/http.c \
                             services/uplink/stow.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_FLAGS) $^ -o $@ -lhttp_parser -lcjson -lsodium

$(BUILD)/fuzz/fuzz_request: tests/fuzz/fuzz_request.c services/console/request.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_FLAGS) $^ -o $@ -lhttp_parser

# What a C-FIND/C-MOVE/C-GET identifier becomes in the spool's SQL.
$(BUILD)/fuzz/fuzz_query: tests/fuzz/fuzz_query.c $(wildcard services/common/spool*.c) \
                          services/common/clock.c services/common/log.c services/common/file.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_FLAGS) $^ -o $@ -lsqlite3 -lsodium -lsystemd -lpthread

# The fuzzers run side by side, one to a core (make -j2).
FUZZERS := response request query

fuzz-smoke:
	@$(MAKE) --no-print-directory -j2 $(FUZZERS:%=fuzz-run-%) FUZZ_SECONDS=10

fuzz:
	@$(MAKE) --no-print-directory -j2 $(FUZZERS:%=fuzz-run-%)

fuzz-run-%: $(BUILD)/fuzz/fuzz_%
	scripts/run-fuzz $< tests/fuzz/corpus/$* $(FUZZ_SECONDS)

# Each stage timed, the total printed at the end (scripts/run-stages).
TEST_STAGES := check-style unit unit-asan fuzz-smoke integration integration-asan test-image
test: deps
	@scripts/run-stages $(MAKE) $(TEST_STAGES)

bench: deps all
	OUTPOST_BUILD=$(abspath $(BUILD)) $(PYTHON) tests/bench/bench_receiver.py
	OUTPOST_BUILD=$(abspath $(BUILD)) $(PYTHON) tests/bench/bench_uplink.py
	OUTPOST_BUILD=$(abspath $(BUILD)) $(PYTHON) tests/bench/bench_shaping.py
	OUTPOST_BUILD=$(abspath $(BUILD)) $(PYTHON) tests/bench/bench_destinations.py
	OUTPOST_BUILD=$(abspath $(BUILD)) $(PYTHON) tests/bench/bench_compression.py
	OUTPOST_BUILD=$(abspath $(BUILD)) $(PYTHON) tests/bench/bench_console.py
	OUTPOST_BUILD=$(abspath $(BUILD)) $(PYTHON) tests/bench/bench_console_load.py
	OUTPOST_BUILD=$(abspath $(BUILD)) $(PYTHON) tests/bench/bench_query.py
	OUTPOST_BUILD=$(abspath $(BUILD)) $(PYTHON) tests/bench/bench_scale.py

# --- style -------------------------------------------------------------------

STYLE_FILES = $(shell git ls-files 'services/*.c' 'services/*.h' 'services/*.cc' \
                'tests/*.c' 'tests/*.h' 2>/dev/null)

check-style:
	@scripts/check-style $(STYLE_FILES)
	@scripts/check-layers

format:
	clang-format -i $(STYLE_FILES)

# Regenerates the tables of docs/CONFORMANCE.md from the receiver.
conformance: all
	scripts/gen-conformance $(BUILD)/outpost-receiver docs/CONFORMANCE.md

clean:
	rm -rf $(BUILD)

.SECONDARY:

.PHONY: all deb keys image bundle qemu test-image install-flash deps run unit asan unit-asan integration integration-asan fuzz fuzz-smoke test bench check-style format conformance clean
