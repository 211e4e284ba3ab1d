#!/usr/bin/env bash
# Installs every Debian package Switchyard needs to build and test, then the sentencepiece library
# (built from source, scripts/install-sentencepiece.sh). Idempotent; run as root (or with sudo
# available) on a fresh Debian 12 machine.
#
# --build-only: only what building the `switchyard` binary needs (configured with
# -DSWITCHYARD_BUILD_TESTS=OFF): no test, fuzz, format or monitoring tools. The container image's
# build stage (Dockerfile) uses it.
set -euo pipefail

build_only=false
case "${1:-}" in
  "") ;;
  --build-only) build_only=true ;;
  *) echo "usage: $0 [--build-only]" >&2; exit 2 ;;
esac

# Only what the build, scripts or tests use: libspdlog-dev brings libfmt-dev; `prometheus` is the
# server tests/integration/python/test_prometheus.py scrapes with; clang and libclang-rt-14-dev
# build the fuzz targets; ccache is the compiler cache scripts/test.sh uses when present.
# build-essential brings dpkg-dev, which install-sentencepiece.sh fetches Debian's source with.
build_packages=(
  build-essential cmake ninja-build pkg-config ca-certificates
  nlohmann-json3-dev libspdlog-dev libcli11-dev
  libcpp-httplib-dev prometheus-cpp-dev libboost-dev libssl-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libgloo-dev coinor-libcbc-dev
)
dev_packages=(
  git python3 python3-venv ccache openssl
  clang clang-format libclang-rt-14-dev
  libgtest-dev
  prometheus
)
packages=("${build_packages[@]}")
if ! $build_only; then packages+=("${dev_packages[@]}"); fi

bash "$(dirname "$0")/apt-install.sh" install-deps "${packages[@]}"

# Not from apt: Debian's libsentencepiece0 carries its own protobuf and crashes gRPC binaries.
bash "$(dirname "$0")/install-sentencepiece.sh"
