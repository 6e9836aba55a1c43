# make demo | make test | make bench — each sets up what it needs (a .venv, pinned packages, apt packages).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := libturbojpeg0-dev libopencv-dev pkg-config
DEMO_RUN ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)
export OMP_NUM_THREADS ?= 1
export DS_ACCELERATOR ?= cpu

.PHONY: demo test bench bench-loader bench-prep setup apt clean

setup: $(STAMP)

# FFCV compiles against libturbojpeg and OpenCV
apt:
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		echo "installing $(APT_PACKAGES)"; \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

# uv installs the same pinned wheels as pip, downloading and compiling in parallel: 45-65 s instead of 150 s here.
# (--compile-bytecode: with PYTHONDONTWRITEBYTECODE set, as on this machine, every process would compile torch.)
# `make INSTALLER=pip ...` uses pip alone (uv reads no pip.conf: a private index set there needs pip, or
# UV_INDEX_URL); pip also takes over where uv cannot be installed or its install fails.
INSTALLER ?= uv
# torch first and pinned: an unpinned resolve drags in the newest CUDA build (several GB)
install = $(1) torch==2.14.1 torchvision==0.29.1 && $(1) -e '.[test]'

$(STAMP): setup.py | apt
	$(PYTHON) -m venv $(VENV)
	@if [ "$(INSTALLER)" = uv ] && $(BIN)/pip install -q uv && echo "installing with uv" && \
		$(call install,$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python); then :; \
	else \
		echo "installing with pip" && $(BIN)/pip install -q --upgrade pip wheel setuptools && \
		$(call install,$(BIN)/pip install -q); \
	fi
	touch $(STAMP)

data/demo/manifest.json: | $(STAMP)
	$(BIN)/vt-prep synthetic --out data/demo

demo: $(STAMP) data/demo/manifest.json
	$(BIN)/vt-launch --nproc 2 experiment=demo run_dir=$(DEMO_RUN)

# 2 workers, a file each at a time (tests/conftest.py orders the files, longest first)
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder tests

bench: $(STAMP) data/demo/manifest.json
	$(BIN)/python -m bench.step_time --out docs/BENCHMARKS.md

# builds its own synthetic 360p videos + shards under data/bench-loader (a few minutes the first time)
bench-loader: $(STAMP)
	$(BIN)/python -m bench.loader --out docs/BENCHMARKS.md

# vt-prep vs one ffmpeg per video; makes its 480p videos under data/bench-prep (minutes the first time), apt ffmpeg
bench-prep: $(STAMP)
	$(BIN)/python -m bench.prep --out docs/BENCHMARKS.md

clean:
	rm -rf data/demo
