#!/usr/bin/env bash
# Installs the Debian 12 packages that interco needs to build, test, run and benchmark.
# Idempotent: installs only what is missing. Shared by `tools/run-federation.sh` and
# `tools/test.sh` (the two commands of the README quick start).
set -euo pipefail

# Build and runtime libraries, all from Debian 12 (see docs/ARCHITECTURE.md, "Dependencies").
packages=(
  cmake ninja-build pkg-config g++ ccache git openssl ca-certificates
  libssl-dev libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  librocksdb-dev libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev grpc-proto zlib1g-dev
  python3 procps
)
# Reference peers for the benchmarks only (bench/): etcd and RocksDB's db_bench.
if [[ "${INTERCO_DEPS_BENCH:-0}" == 1 ]]; then
  packages+=(etcd-server etcd-client rocksdb-tools)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "deps: installing ${missing[*]}" >&2
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: must run as root to install packages (or install them yourself)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
