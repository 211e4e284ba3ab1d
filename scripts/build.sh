#!/usr/bin/env bash
# Configures and builds Switchyard into build/ (Release). Extra arguments go to cmake configure.
# ccache, when installed, is keyed relative to the clone (CCACHE_BASEDIR), as in scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_BASEDIR="$(pwd)" CCACHE_NOHASHDIR=true
jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j "$jobs"
