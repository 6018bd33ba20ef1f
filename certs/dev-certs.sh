#!/usr/bin/env bash
# Development certificates: a federation PKI in OUT_DIR, a node certificate per SIREN,
# and three clients per SIREN: "admin" (role admin), "app" (role writer) and "viewer"
# (role reader, e.g. a dashboard).
#
# Creates only what is missing, so it can run before every start. Existing material is
# kept; a certificate is renewed (same key) only if it expires within a day, and the
# CRL is regenerated only if it expires within a week. SIRENs are processed in
# parallel (pki.sh serializes the signing); the output keeps the order of the SIRENs.
#
# Usage: dev-certs.sh OUT_DIR FEDERATION SIREN [SIREN...]
# Example: certs/dev-certs.sh certs/out interco.local 200046977 243500139
set -euo pipefail

PROG=${0##*/}
case ${BASH_SOURCE[0]} in
  */*) PKI="$(cd "${BASH_SOURCE[0]%/*}" && pwd)/pki.sh" ;;
  *) PKI="$PWD/pki.sh" ;;
esac

die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 1
}

if (($# < 3)); then
  printf 'Usage: %s OUT_DIR FEDERATION SIREN [SIREN...]\n' "$PROG" >&2
  exit 2
fi
[[ -f $PKI ]] || die "pki.sh not found next to $PROG"
fed=$2
mkdir -p -- "$1"
out=$(cd -- "$1" && pwd)
shift 2

pki() { bash "$PKI" --dir "$out" "$@"; }

if [[ -f $out/federation ]]; then
  read -r existing <"$out/federation"
  [[ $existing == "$fed" ]] || die "$out holds federation \"$existing\", not \"$fed\""
else
  pki init --federation "$fed"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/dev-certs.XXXXXX")
trap 'rm -rf -- "$work"' EXIT

# ensure STATUS_FILE PATH KIND [pki.sh arguments to create it...]: creates or renews
# the certificate in PATH if needed, and appends created|renewed|kept to STATUS_FILE.
ensure() {
  local status=$1 path=$2 kind=$3
  shift 3
  if [[ ! -f $out/$path/tls.crt ]]; then
    pki "$kind" "$@"
    echo created >>"$status"
  elif ! openssl x509 -in "$out/$path/tls.crt" -noout -checkend 86400 >/dev/null 2>&1; then
    pki renew "$path"
    echo renewed >>"$status"
  else
    echo kept >>"$status"
  fi
}

# The four certificates of SIREN $2, reported in $work/$1.*.
authority() {
  local st=$work/$1.status
  ensure "$st" "nodes/$2" node --siren "$2"
  ensure "$st" "clients/$2/admin" client --siren "$2" --name admin --role admin
  ensure "$st" "clients/$2/app" client --siren "$2" --name app --role writer
  ensure "$st" "clients/$2/viewer" client --siren "$2" --name viewer --role reader
}

jobs_max=$(nproc 2>/dev/null || echo 2)
((jobs_max >= 2)) || jobs_max=2
# Prints file $1 without forking.
print_file() {
  local lines=()
  mapfile -t lines <"$1"
  if ((${#lines[@]})); then printf '%s\n' "${lines[@]}"; fi
}

n=0 running=0
pids=()
declare -A seen=()
for siren in "$@"; do
  [[ -z ${seen[$siren]:-} ]] || continue
  seen[$siren]=1
  n=$((n + 1))
  if ((running >= jobs_max)); then
    wait -n || true
    running=$((running - 1))
  fi
  authority "$n" "$siren" >"$work/$n.out" 2>"$work/$n.err" &
  pids[n]=$!
  running=$((running + 1))
done

failed=0
for ((i = 1; i <= n; i++)); do
  wait "${pids[i]}" || failed=1
  print_file "$work/$i.out"
  print_file "$work/$i.err" >&2
done
((failed == 0)) || die "some certificates could not be created (see above)"

next=$(openssl crl -in "$out/issuing/crl.pem" -noout -nextupdate)
if (($(date -u -d "${next#nextUpdate=}" +%s) < EPOCHSECONDS + 7 * 86400)); then
  pki crl
fi

created=0 renewed=0 kept=0
for ((i = 1; i <= n; i++)); do
  while read -r what; do
    case $what in
      created) created=$((created + 1)) ;;
      renewed) renewed=$((renewed + 1)) ;;
      kept) kept=$((kept + 1)) ;;
    esac
  done <"$work/$i.status"
done
printf 'dev certificates in %s (federation %s, %d SIREN(s)): %d created, %d renewed, %d unchanged\n' \
  "$out" "$fed" "$n" "$created" "$renewed" "$kept"
