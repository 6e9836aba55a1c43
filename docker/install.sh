#!/usr/bin/env bash
# Installs videotrain into an image: `install.sh system` (apt packages, a venv, pinned torch) is one cached layer,
# `install.sh project` (the package and its dependencies) the next. Shared by Dockerfile and Dockerfile.gpu.
set -euo pipefail
VENV=/opt/venv
case "${1:?usage: install.sh system|project}" in
  system)
    apt-get update -qq
    # FFCV compiles against libturbojpeg and OpenCV; CUDA base images bring no Python of their own
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        build-essential pkg-config libturbojpeg0-dev libopencv-dev git ca-certificates \
        $(command -v python3 >/dev/null || echo python3 python3-dev python3-venv)
    rm -rf /var/lib/apt/lists/*
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --no-cache-dir --upgrade pip wheel setuptools
    # pinned like setup.py: an unpinned torch resolves to the newest build and drags in several GB
    "$VENV/bin/pip" install -q --no-cache-dir torch==2.14.1 torchvision==0.29.1
    ;;
  project)
    "$VENV/bin/pip" install -q --no-cache-dir -e '.[test]'
    ;;
esac
