#!/usr/bin/env bash
# The whole test suite (the README's second command; .ci/run calls it).
#
#   1. installs what is missing (tools/deps.sh), builds (RelWithDebInfo, ccache);
#   2. runs every test except the "heavy" label: unit, integration (real mTLS over
#      loopback, real node processes), crash (kill -9 under load), PKI script tests;
#   3. builds the unit and integration tests with AddressSanitizer + UBSan and runs them.
#
# INTERCO_TEST_HEAVY=1 also runs the long sweeps (label "heavy").
# INTERCO_SKIP_SANITIZERS=1 skips step 3 (for quick local runs).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
start=$(date +%s)

bash tools/deps.sh
export GRPC_VERBOSITY=${GRPC_VERBOSITY:-NONE}
jobs=$(nproc)
failed=0
passed=0

count() {  # count passed/failed from a ctest log
  local log=$1
  local line
  line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1 || true)
  if [[ -n $line ]]; then
    local total f
    f=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
    total=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$line")
    passed=$((passed + total - f))
    failed=$((failed + f))
  else
    failed=$((failed + 1))
  fi
}

echo "== build (RelWithDebInfo)"
bash tools/build.sh "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo

echo "== tests"
label_args=(-LE heavy)
[[ ${INTERCO_TEST_HEAVY:-0} == 1 ]] && label_args=()
log=$(mktemp)
(cd build && ctest -j "$jobs" --output-on-failure --timeout 900 "${label_args[@]}") 2>&1 | tee "$log" || true
count "$log"

echo "== PKI scripts"
if bash certs/test-pki.sh 2>&1 | tee "$log"; then :; fi
pki_line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1 || true)
if [[ -n $pki_line ]]; then
  passed=$((passed + $(cut -d' ' -f1 <<<"$pki_line")))
  failed=$((failed + $(cut -d' ' -f3 <<<"$pki_line")))
else
  failed=$((failed + 1))
fi

if [[ ${INTERCO_SKIP_SANITIZERS:-0} != 1 ]]; then
  echo "== build (ASan + UBSan)"
  bash tools/build.sh "$root/build-asan" -DCMAKE_BUILD_TYPE=Debug -DINTERCO_SANITIZE=ON \
    -DINTERCO_BUILD_BENCH=OFF
  echo "== tests under sanitizers (unit, integration)"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest -j "$jobs" --output-on-failure --timeout 900 -L 'unit|integration') 2>&1 | tee "$log" || true
  count "$log"
fi
rm -f "$log"

echo "== done in $(($(date +%s) - start)) s"
echo "${passed} passed, ${failed} failed"
[[ $failed -eq 0 ]]
