#!/usr/bin/env bash
# Configures and builds interco into a build directory (default: build/, RelWithDebInfo).
#   tools/build.sh [BUILD_DIR] [extra cmake args...] [-- ninja targets...]
# Uses ccache when present. Shared by tools/quickstart.sh and tools/test.sh.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${1:-"$root/build"}
shift || true
cmake_args=()
targets=()
while (($#)); do
  if [[ $1 == -- ]]; then
    shift
    targets=("$@")
    break
  fi
  cmake_args+=("$1")
  shift
done
export CCACHE_DIR=${CCACHE_DIR:-"$HOME/.cache/ccache"}
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
# Paths under the checkout are hashed relative to it: clones in other folders (CI) hit the
# same cache entries.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root}
export CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-true}
# Two cores, and each C++ translation unit of gRPC code takes up to ~600 MB: -j$(nproc).
jobs=$(nproc)
cmake -S "$root" -B "$build_dir" -G Ninja ${cmake_args[@]+"${cmake_args[@]}"} >/dev/null
ninja -C "$build_dir" -j "$jobs" ${targets[@]+"${targets[@]}"}
