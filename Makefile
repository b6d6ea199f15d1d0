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
WEB_ROOT ?= $(abspath services/console)
CPPFLAGS  += -D_GNU_SOURCE -DOP_VERSION='"$(VERSION)"' -DOP_WEB_ROOT='"$(WEB_ROOT)"' -Iservices
ALL_CFLAGS   = -std=c11 $(WARN) -pthread -fno-strict-aliasing $(CFLAGS)
# Debian's DCMTK headers need C++17.
ALL_CXXFLAGS = -std=c++17 $(WARN) -pthread $(CXXFLAGS)

# pkg-config dcmtk fails on Debian 12 (its .pc requires sndfile).
DCMTK_LIBS  := -ldcmnet -ldcmdata -loflog -lofstd
COMMON_LIBS := -lsqlite3 -linih -lsodium -lsystemd -lm -pthread
UPLINK_LIBS := -luv -lmbedtls -lmbedx509 -lmbedcrypto -lhttp_parser -lcjson

# --- sources ---------------------------------------------------------------

COMMON_SRC   := $(wildcard services/common/*.c)
RECEIVER_SRC := $(wildcard services/receiver/*.c)
RECEIVER_CXX := $(wildcard services/receiver/*.cc)
UPLINK_SRC   := $(wildcard services/uplink/*.c)
CTL_SRC      := $(wildcard services/ctl/*.c)

obj = $(patsubst %.c,$(1)/obj/%.o,$(filter %.c,$(2))) \
      $(patsubst %.cc,$(1)/obj/%.o,$(filter %.cc,$(2)))

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(ALL_CXXFLAGS) -MMD -MP -c $< -o $@

COMMON_OBJ   := $(call obj,$(BUILD),$(COMMON_SRC))
RECEIVER_OBJ := $(call obj,$(BUILD),$(RECEIVER_SRC) $(RECEIVER_CXX))
UPLINK_OBJ   := $(call obj,$(BUILD),$(UPLINK_SRC))
CTL_OBJ      := $(call obj,$(BUILD),$(CTL_SRC))

$(BUILD)/outpost-receiver: $(RECEIVER_OBJ) $(COMMON_OBJ)
	$(CXX) $(ALL_CXXFLAGS) $^ -o $@ $(DCMTK_LIBS) $(COMMON_LIBS)

$(BUILD)/outpost-uplink: $(UPLINK_OBJ) $(COMMON_OBJ)
	$(CC) $(ALL_CFLAGS) $^ -o $@ $(UPLINK_LIBS) $(COMMON_LIBS)

$(BUILD)/outpostctl: $(CTL_OBJ) $(COMMON_OBJ)
	$(CC) $(ALL_CFLAGS) $^ -o $@ -lcjson $(COMMON_LIBS)

# --- unit tests (cmocka), one binary per module ----------------------------
#
# tests/unit/test_<module>.c tests services/*/<module>.c; it links every
# service's objects but the mains.

UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
LIB_OBJ := $(COMMON_OBJ) $(filter-out %/main.o,$(RECEIVER_OBJ) $(UPLINK_OBJ) $(CTL_OBJ))

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) $^ -o $@ -lcmocka $(DCMTK_LIBS) $(UPLINK_LIBS) $(COMMON_LIBS)

all: $(BUILD)/outpost-receiver $(BUILD)/outpost-uplink $(BUILD)/outpostctl $(UNIT_BINS)

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
              util-linux rauc python3-pytest-xdist
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
	@scripts/run-unit $(BUILD)/tests

unit-asan:
	$(MAKE) --no-print-directory BUILD=$(BUILD)/asan \
	  CFLAGS="$(ASAN_FLAGS)" CXXFLAGS="$(ASAN_FLAGS)" all
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  scripts/run-unit $(BUILD)/asan/tests

integration: all
	cd tests/integration && OUTPOST_BUILD=$(abspath $(BUILD)) \
	  $(PYTHON) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The integration tests that feed the services hostile or unusual input,
# run again against the ASan+UBSan build (any sanitizer report fails).
ASAN_INTEGRATION := test_receiver_basics.py test_garbage.py test_samples.py \
                    test_limits.py test_admission.py test_uplink_faults.py \
                    test_uplink_tls.py test_api.py test_outpostctl.py \
                    test_firmware_upload.py

integration-asan: unit-asan
	cd tests/integration && OUTPOST_BUILD=$(abspath $(BUILD)/asan) \
	  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(PYTHON) -m pytest -q -p no:cacheprovider $(ASAN_INTEGRATION) $(PYTEST_ARGS)

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

$(BUILD)/fuzz/fuzz_request: tests/fuzz/fuzz_request.c services/uplink/request.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_FLAGS) $^ -o $@ -lhttp_parser

fuzz-smoke: $(BUILD)/fuzz/fuzz_response $(BUILD)/fuzz/fuzz_request
	scripts/run-fuzz $(BUILD)/fuzz/fuzz_response tests/fuzz/corpus/response 30
	scripts/run-fuzz $(BUILD)/fuzz/fuzz_request tests/fuzz/corpus/request 30

fuzz: $(BUILD)/fuzz/fuzz_response $(BUILD)/fuzz/fuzz_request
	scripts/run-fuzz $(BUILD)/fuzz/fuzz_response tests/fuzz/corpus/response $(FUZZ_SECONDS)
	scripts/run-fuzz $(BUILD)/fuzz/fuzz_request tests/fuzz/corpus/request $(FUZZ_SECONDS)

test: deps check-style unit unit-asan fuzz-smoke integration integration-asan test-image

bench: deps all
	OUTPOST_BUILD=$(abspath $(BUILD)) $(PYTHON) tests/bench/bench_receiver.py
	OUTPOST_BUILD=$(abspath $(BUILD)) $(PYTHON) tests/bench/bench_uplink.py
	OUTPOST_BUILD=$(abspath $(BUILD)) $(PYTHON) tests/bench/bench_shaping.py
	OUTPOST_BUILD=$(abspath $(BUILD)) $(PYTHON) tests/bench/bench_console.py

# --- style -------------------------------------------------------------------

STYLE_FILES = $(shell git ls-files 'services/*.c' 'services/*.h' 'services/*.cc' \
                'tests/*.c' 'tests/*.h' 2>/dev/null)

check-style:
	@scripts/check-style $(STYLE_FILES)

format:
	clang-format -i $(STYLE_FILES)

# Regenerates the tables of docs/CONFORMANCE.md from the receiver.
conformance: all
	scripts/gen-conformance $(BUILD)/outpost-receiver docs/CONFORMANCE.md

clean:
	rm -rf $(BUILD)

.SECONDARY:

.PHONY: all deb keys image bundle qemu test-image install-flash deps run unit unit-asan integration integration-asan fuzz fuzz-smoke test bench check-style format conformance clean
