# Thin wrapper around CMake for the README's two commands.
#   make demo   builds vmstack and runs `vmstack info` and `vmstack demo`
#   make test   installs what the tests need (Debian), builds every configuration and
#               runs the whole suite (scripts/test-all.sh; CI runs exactly this)
#   make check  the quick loop: default build and its tests only
BUILD ?= build
JOBS  ?= 2

.PHONY: all build demo test check bench clean

all: build

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

demo: build
	./$(BUILD)/tools/vmstack info
	./$(BUILD)/tools/vmstack demo

test:
	bash scripts/test-all.sh

check: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

bench: build
	./$(BUILD)/tools/vmstack bench

clean:
	rm -rf build build-* out
