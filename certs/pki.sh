#!/usr/bin/env bash
# Federation PKI for interco: an offline root CA, an issuing CA, and Ed25519
# certificates for nodes and client applications, in cert-manager Secret layout.
# Needs bash >= 5, OpenSSL >= 3.0 and GNU date. See certs/README.md, or "pki.sh help".
set -euo pipefail
umask 022
export TZ=UTC

PROG=${0##*/}
DIR=${PKI_DIR:-}

ROOT_DAYS=3650
ISSUING_DAYS=1825
LEAF_DAYS=90
CRL_DAYS=30
ROOT_CRL_DAYS=365
# Certificates start this many seconds in the past, to tolerate clock skew.
BACKDATE_SECONDS=300
REASONS="unspecified keyCompromise CACompromise affiliationChanged superseded cessationOfOperation"
ROLES="reader writer admin"

usage() {
  cat <<EOF
Usage: $PROG [--dir DIR] COMMAND [OPTIONS]

Federation PKI for interco: an offline root CA, an issuing CA, and certificates
for nodes and client applications. Everything is written under DIR (default:
\$PKI_DIR, else certs/out next to this script). --dir may also follow COMMAND.

Commands:
  init --federation NAME
      Create the root CA (root/, $ROOT_DAYS days), the issuing CA (issuing/,
      $ISSUING_DAYS days, pathlen:0), the trust bundle ca.crt and empty CRLs.
      Does nothing if DIR already holds the same federation.

  node --siren SIREN [--dns NAME]... [--ip ADDR]... [--csr FILE]
       [--days N] [--not-before T] [--not-after T]
      Enroll a node: new Ed25519 key (or the key of the CSR FILE: Ed25519 or
      EC P-256/P-384), URI SAN spiffe://<federation>/collectivite/<SIREN>,
      serverAuth and clientAuth. Without --dns and --ip the other SANs are
      DNS:localhost and IP:127.0.0.1. Writes nodes/<SIREN>/{tls.key,tls.crt,ca.crt}
      (with --csr: tls.csr instead of tls.key).

  client --siren SIREN --name NAME --role reader|writer|admin
         [--days N] [--not-before T] [--not-after T]
      Issue a client certificate (new Ed25519 key, clientAuth) with URI SAN
      spiffe://<federation>/collectivite/<SIREN>/client/<NAME> and subject
      O=<SIREN>, OU=<role>, CN=<NAME>. NAME: 1-64 characters of [a-z0-9._-].
      Writes clients/<SIREN>/<NAME>/{tls.key,tls.crt,ca.crt}.

  renew PATH [--days N]
      Issue a new certificate (new serial and validity) for the same key,
      subject and SANs; tls.crt is replaced atomically.

  revoke PATH [--reason REASON]
  revoke --serial HEX [--reason REASON]
      Revoke every unrevoked certificate of PATH's key (earlier renewals
      included; a certificate of the issuing CA missing from the database,
      such as one issued by cert-manager, is added to it), or one serial,
      then regenerate the CRL. REASON: unspecified
      (default), keyCompromise, CACompromise, affiliationChanged, superseded
      or cessationOfOperation.

  crl [--days N]
      Regenerate issuing/crl.pem (next update in N days, default $CRL_DAYS), the
      root CRL if root/ca.key is present, and the copies crl/<issuer hash>.r0.

  show PATH
      Print subject, SANs, key type, serial and validity; verify the chain and
      the revocation status. Exits 1 if either check fails.

PATH is a certificate directory: relative to DIR (nodes/<SIREN>,
clients/<SIREN>/<NAME>) or any existing directory holding tls.crt.
SIREN: 9 digits with a valid Luhn checksum (or La Poste's: 356 followed by 6
digits, digit sum a multiple of 5). T: UTC time YYYYMMDDHHMMSSZ.
N: days of validity (default $LEAF_DAYS); with --not-before, counted from it.
EOF
}

die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 1
}

usage_error() {
  printf '%s: %s\n' "$PROG" "$*" >&2
  printf "Run '%s help' for usage.\n" "$PROG" >&2
  exit 2
}

((BASH_VERSINFO[0] >= 5)) || die "bash >= 5 is required (this is $BASH_VERSION)"
command -v openssl >/dev/null 2>&1 || die "openssl not found in PATH"

WORK=""
CLEANUP=()
cleanup() { if ((${#CLEANUP[@]})); then rm -rf -- "${CLEANUP[@]}"; fi; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
make_work_dir() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/pki.XXXXXX")
  CLEANUP+=("$WORK")
}

# Runs openssl; on failure prints its diagnostics and exits.
ossl() {
  if ! openssl "$@" 2>"$WORK/stderr"; then
    local msg
    msg=$(grep -v -e '^Using configuration from' -e '^Check that the request' \
      -e '^Signature ok' "$WORK/stderr" | head -n 6 | tr '\n' ' ' || true)
    die "openssl $1 failed: ${msg:-no details}"
  fi
}

# --- Validation --------------------------------------------------------------------

# Same rule as interco::replication::ValidateSiren.
check_siren() {
  local s=$1 i d sum=0 digit_sum=0
  [[ $s =~ ^[0-9]{9}$ ]] || die "invalid SIREN \"$s\": must be 9 digits"
  for ((i = 0; i < 9; i++)); do
    d=${s:i:1}
    digit_sum=$((digit_sum + d))
    if (((8 - i) % 2 == 1)); then
      d=$((d * 2))
      if ((d > 9)); then d=$((d - 9)); fi
    fi
    sum=$((sum + d))
  done
  if ((sum % 10 == 0)); then return 0; fi
  if [[ ${s:0:3} == 356 ]] && ((digit_sum % 5 == 0)); then return 0; fi
  die "invalid SIREN \"$s\": checksum (Luhn) does not match"
}

check_federation_name() {
  [[ $1 =~ ^[a-z0-9._-]{1,255}$ ]] ||
    die "invalid federation \"$1\": a SPIFFE trust domain, 1-255 characters of [a-z0-9._-]"
}

check_client_name() {
  [[ $1 =~ ^[a-z0-9._-]{1,64}$ && $1 != . && $1 != .. ]] ||
    die "invalid client name \"$1\": must be 1-64 characters of [a-z0-9._-]"
}

check_role() {
  [[ " $ROLES " == *" $1 "* ]] || die "invalid role \"$1\": must be one of ${ROLES// /, }"
}

check_dns() {
  local label='[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?'
  [[ ${#1} -le 253 && $1 =~ ^(\*\.)?$label(\.$label)*$ ]] || die "invalid DNS name \"$1\""
}

check_ip() {
  [[ $1 =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ || ($1 == *:* && $1 =~ ^[0-9A-Fa-f:.]+$) ]] ||
    die "invalid IP address \"$1\""
}

check_days() {
  [[ $1 =~ ^[1-9][0-9]{0,4}$ ]] || die "invalid --days \"$1\": must be a positive number of days"
}

# UTC time YYYYMMDDHHMMSSZ -> seconds since the epoch, into the variable named $1.
time_to_epoch() {
  local t=$2 e
  [[ $t =~ ^[0-9]{14}Z$ ]] || die "invalid time \"$t\": expected YYYYMMDDHHMMSSZ (UTC)"
  e=$(date -u -d "${t:0:4}-${t:4:2}-${t:6:2} ${t:8:2}:${t:10:2}:${t:12:2} UTC" +%s 2>/dev/null) ||
    die "invalid time \"$t\": not a valid date"
  printf -v "$1" '%s' "$e"
}

# Seconds since the epoch -> UTC time YYYYMMDDHHMMSSZ, into the variable named $1.
epoch_to_time() { printf -v "$1" '%(%Y%m%d%H%M%SZ)T' "$2"; }

# Fails unless option $1 has a value.
need_value() {
  [[ $# -ge 2 && -n $2 && $2 != --* ]] || usage_error "option $1 needs a value"
}

# --- PKI directory -----------------------------------------------------------------

# The default DIR: out/ next to this script.
default_dir() {
  if [[ -z $DIR ]]; then
    case ${BASH_SOURCE[0]} in
      */*) DIR="$(cd "${BASH_SOURCE[0]%/*}" && pwd)/out" ;;
      *) DIR=$PWD/out ;;
    esac
  fi
}

set_dir_absolute() {
  default_dir
  [[ $DIR != *[\$\\\"]* && $DIR != *$'\n'* ]] ||
    die "unsupported characters in --dir \"$DIR\" (\$, \\, \" or newline)"
  if [[ $DIR != /* || $DIR == */. || $DIR == */./* || $DIR == *..* ]]; then
    DIR=$(cd "$DIR" && pwd)
  fi
  DIR=${DIR%/}
}

FEDERATION=""
require_pki() {
  default_dir
  [[ -f $DIR/federation ]] ||
    die "no federation PKI in $DIR (run '$PROG --dir $DIR init --federation NAME' first)"
  set_dir_absolute
  read -r FEDERATION <"$DIR/federation"
  check_federation_name "$FEDERATION"
  local f
  for f in issuing/ca.key issuing/ca.crt ca.crt; do
    [[ -f $DIR/$f ]] || die "incomplete PKI in $DIR: missing $f"
  done
  make_work_dir
}

# Serializes the use of the CA databases (openssl ca replaces index.txt and serial by
# renaming); held until the script exits.
LOCKED=0
lock_pki() {
  if ((LOCKED == 1)); then return 0; fi
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$DIR/.lock"
    flock -w 60 9 || die "timed out waiting for the lock on $DIR"
  fi
  LOCKED=1
  local f
  for f in issuing/index.txt issuing/serial; do
    [[ -f $DIR/$f || ! -d $DIR/issuing ]] || die "incomplete PKI in $DIR: missing $f"
  done
}

# Path $2 relative to DIR, for messages, into the variable named $1.
rel() {
  local p=$2
  if [[ $p == "$DIR"/* ]]; then p=${p#"$DIR"/}; fi
  printf -v "$1" '%s' "$p"
}

# Certificate directory $2 (relative to DIR, or any path) as an absolute path, into
# the variable named $1.
resolve_cert_dir() {
  local p=${2%/} d
  if [[ $p != /* && -d $DIR/$p ]]; then
    d=$DIR/$p
  elif [[ -d $p ]]; then
    d=$p
  else
    die "no certificate directory \"$2\" (looked for $DIR/$p and $p)"
  fi
  d=$(cd "$d" && pwd)
  [[ -f $d/tls.crt ]] || die "no tls.crt in $d"
  printf -v "$1" '%s' "$d"
}

# Writes the openssl ca configuration of the CA in directory $1 to $2.
write_ca_config() {
  printf '%s\n' \
    '[ca]' \
    'default_ca = ca_section' \
    '[ca_section]' \
    "database = $1/index.txt" \
    "serial = $1/serial" \
    "crlnumber = $1/crlnumber" \
    "new_certs_dir = $1/certs" \
    "certificate = $1/ca.crt" \
    "private_key = $1/ca.key" \
    'default_md = sha256' \
    "default_days = $LEAF_DAYS" \
    "default_crl_days = $CRL_DAYS" \
    'policy = policy_section' \
    'unique_subject = no' \
    'email_in_dn = no' \
    'copy_extensions = none' \
    'preserve = no' \
    'crl_extensions = crl_ext' \
    '[policy_section]' \
    'organizationName = optional' \
    'organizationalUnitName = optional' \
    'commonName = supplied' \
    '[crl_ext]' \
    'authorityKeyIdentifier = keyid:always' >"$2"
}

write_req_config() {
  printf '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n' >"$WORK/req.cnf"
}

# Creates an empty openssl ca database in directory $1.
init_ca_db() {
  mkdir -p "$1/certs"
  : >"$1/index.txt"
  printf 'unique_subject = no\n' >"$1/index.txt.attr"
  # A random positive 64-bit first serial; openssl ca increments it.
  printf '%08X%08X\n' $(((SRANDOM & 0x6FFFFFFF) | 0x10000000)) "$SRANDOM" >"$1/serial"
  printf '01\n' >"$1/crlnumber"
}

# Checks a CSR's signature and key type (Ed25519, or EC on P-256/P-384).
check_csr() {
  local csr=$1 text algo
  [[ -f $csr ]] || die "no CSR file $csr"
  openssl req -in "$csr" -noout -verify >/dev/null 2>&1 ||
    die "$csr is not a valid CSR (unreadable, or bad self-signature)"
  text=$(ossl req -in "$csr" -noout -text)
  algo=$(sed -n 's/^ *Public Key Algorithm: *//p' <<<"$text" | head -n 1)
  case $algo in
    ED25519) ;;
    id-ecPublicKey)
      grep -Eq 'ASN1 OID: (prime256v1|secp384r1)' <<<"$text" ||
        die "CSR $csr: EC keys must be on P-256 or P-384"
      ;;
    *) die "CSR $csr: key type ${algo:-unknown} not accepted (use Ed25519, or EC P-256/P-384)" ;;
  esac
}

# Sets START and END (openssl ca -startdate/-enddate) from days $1, --not-before $2 and
# --not-after $3; checks that the issuing CA outlives END.
START="" END=""
compute_validity() {
  local days=$1 nb=$2 na=$3 now=$EPOCHSECONDS nbe nae ca_end
  if [[ -n $nb ]]; then time_to_epoch nbe "$nb"; fi
  if [[ -n $na ]]; then time_to_epoch nae "$na"; fi
  if [[ -z $nb && -z $na ]]; then
    nbe=$((now - BACKDATE_SECONDS))
    nae=$((now + days * 86400))
  elif [[ -z $na ]]; then
    nae=$((nbe + days * 86400))
  elif [[ -z $nb ]]; then
    if ((nae > now)); then nbe=$((now - BACKDATE_SECONDS)); else nbe=$((nae - days * 86400)); fi
  fi
  ((nae > nbe)) || die "--not-after must be later than --not-before"
  if ((nae > now)) &&
    ! openssl x509 -in "$DIR/issuing/ca.crt" -noout -checkend "$((nae - now))" >/dev/null 2>&1; then
    ca_end=$(ossl x509 -in "$DIR/issuing/ca.crt" -noout -enddate)
    die "the certificate would outlive the issuing CA (valid until ${ca_end#notAfter=})"
  fi
  epoch_to_time START "$nbe"
  epoch_to_time END "$nae"
}

# Signs a CSR with the CA in directory $1; sets ISSUED_SERIAL.
# issue CA_DIR CSR EXTFILE SUBJECT OUT START END [openssl ca options...]
ISSUED_SERIAL=""
issue() {
  lock_pki
  write_ca_config "$1" "$WORK/ca.cnf"
  read -r ISSUED_SERIAL <"$1/serial"
  ossl ca -batch -notext -config "$WORK/ca.cnf" -in "$2" -extfile "$3" -extensions ext \
    -subj "$4" -out "$5" -startdate "$6" -enddate "$7" "${@:8}"
}

# Writes the extension file of a leaf. $1: file, $2: node|client, $3: URI; then the
# other SANs as DNS:name or IP:address.
write_leaf_ext() {
  local file=$1 kind=$2 uri=$3 e n_dns=0 n_ip=0 eku=clientAuth
  shift 3
  if [[ $kind == node ]]; then eku=serverAuth,clientAuth; fi
  {
    printf '[ext]\n'
    printf 'basicConstraints = critical,CA:FALSE\n'
    printf 'keyUsage = critical,digitalSignature\n'
    printf 'extendedKeyUsage = %s\n' "$eku"
    printf 'subjectKeyIdentifier = hash\n'
    printf 'authorityKeyIdentifier = keyid:always\n'
    printf 'subjectAltName = @san\n'
    printf '[san]\n'
    printf 'URI.1 = %s\n' "$uri"
    for e in "$@"; do
      case $e in
        DNS:*) n_dns=$((n_dns + 1)) && printf 'DNS.%d = %s\n' "$n_dns" "${e#DNS:}" ;;
        IP:*) n_ip=$((n_ip + 1)) && printf 'IP.%d = %s\n' "$n_ip" "${e#IP:}" ;;
      esac
    done
  } >"$file"
}

# Concatenates the files $2... into file $1, without forking.
concat() {
  local out=$1 f lines=()
  shift
  for f in "$@"; do
    mapfile -t -O "${#lines[@]}" lines <"$f"
  done
  printf '%s\n' "${lines[@]}" >"$out"
}

# Replaces file $1 by a copy of file $2 atomically: a temporary file in the same
# directory, then a rename, so that readers never see a partial file.
atomic_write() {
  local tmp="${1%/*}/.${1##*/}.tmp.$$"
  CLEANUP+=("$tmp")
  concat "$tmp" "$2"
  mv -f -- "$tmp" "$1"
}

serial_of() {
  local s
  s=$(ossl x509 -in "$2" -noout -serial)
  printf -v "$1" '%s' "${s#serial=}"
}

# Status letter (V, R or E) of serial $2 in the database of CA directory $1.
db_status() { awk -F'\t' -v s="$2" '$4 == s { print $1 }' "$1/index.txt"; }

# --- CRLs --------------------------------------------------------------------------

# Regenerates the CRL of the CA in directory $1, valid $2 days, and publishes it.
gen_crl() {
  write_ca_config "$1" "$WORK/ca.cnf"
  ossl ca -gencrl -config "$WORK/ca.cnf" -crldays "$2" -out "$WORK/crl.pem"
  atomic_write "$1/crl.pem" "$WORK/crl.pem"
  publish_crl "$1/crl.pem"
}

# Copies a CRL to crl/<issuer name hash>.r0 (OpenSSL hashed-directory convention).
publish_crl() {
  local hash
  hash=$(ossl crl -in "$1" -noout -hash)
  mkdir -p "$DIR/crl"
  atomic_write "$DIR/crl/$hash.r0" "$1"
}

# "CRL #n, next update <date>" of CRL file $2, into the variable named $1.
crl_summary() {
  local out num next
  out=$(ossl crl -in "$2" -noout -crlnumber -nextupdate)
  num=$(sed -n 's/^crlNumber=\(0x\)\{0,1\}//p' <<<"$out")
  next=$(sed -n 's/^nextUpdate=//p' <<<"$out")
  printf -v "$1" 'CRL #%d, next update %s' "$((16#$num))" "$next"
}

# --- Commands ----------------------------------------------------------------------

cmd_init() {
  local fed=""
  while (($#)); do
    case $1 in
      --federation) need_value "$@"; fed=$2; shift 2 ;;
      --dir) need_value "$@"; DIR=$2; shift 2 ;;
      *) usage_error "init: unknown argument \"$1\"" ;;
    esac
  done
  [[ -n $fed ]] || usage_error "init: --federation NAME is required"
  check_federation_name "$fed"
  default_dir

  if [[ -f $DIR/federation ]]; then
    local existing
    set_dir_absolute
    read -r existing <"$DIR/federation"
    [[ $existing == "$fed" ]] ||
      die "$DIR already holds federation \"$existing\" (not \"$fed\"); use another --dir"
    echo "federation $fed already initialized in $DIR"
    return 0
  fi
  [[ ! -e $DIR/root && ! -e $DIR/issuing ]] ||
    die "$DIR holds an incomplete PKI (root/ or issuing/ without a federation file); remove it first"
  local version
  version=$(openssl version)
  [[ $version =~ ^OpenSSL\ ([3-9]|[1-9][0-9])\. ]] || die "OpenSSL >= 3.0 is required (found: $version)"
  mkdir -p "$DIR"
  set_dir_absolute
  make_work_dir
  lock_pki

  # Build in a staging directory, then move into place; "federation" comes last.
  local stage="$DIR/.init.$$"
  CLEANUP+=("$stage")
  init_ca_db "$stage/root"
  init_ca_db "$stage/issuing"
  write_req_config
  printf '%s\n' \
    '[root]' \
    'basicConstraints = critical,CA:TRUE' \
    'keyUsage = critical,keyCertSign,cRLSign' \
    'subjectKeyIdentifier = hash' \
    '[ext]' \
    'basicConstraints = critical,CA:TRUE,pathlen:0' \
    'keyUsage = critical,keyCertSign,cRLSign' \
    'subjectKeyIdentifier = hash' \
    'authorityKeyIdentifier = keyid:always' >"$WORK/ca-ext.cnf"

  local start end now=$EPOCHSECONDS d
  epoch_to_time start "$((now - BACKDATE_SECONDS))"
  epoch_to_time end "$((now + ROOT_DAYS * 86400))"
  # Root CA: self-signed through its own database.
  ossl req -new -config "$WORK/req.cnf" -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -pkeyopt ec_param_enc:named_curve -nodes -keyout "$stage/root/ca.key" \
    -subj "/O=$fed/CN=$fed Root CA" -out "$WORK/root.csr"
  issue "$stage/root" "$WORK/root.csr" "$WORK/ca-ext.cnf" "/O=$fed/CN=$fed Root CA" \
    "$stage/root/ca.crt" "$start" "$end" -selfsign -extensions root
  # Issuing CA, signed by the root.
  epoch_to_time end "$((now + ISSUING_DAYS * 86400))"
  ossl req -new -config "$WORK/req.cnf" -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -pkeyopt ec_param_enc:named_curve -nodes -keyout "$stage/issuing/ca.key" \
    -subj "/O=$fed/CN=$fed Issuing CA" -out "$WORK/issuing.csr"
  issue "$stage/root" "$WORK/issuing.csr" "$WORK/ca-ext.cnf" "/O=$fed/CN=$fed Issuing CA" \
    "$stage/issuing/ca.crt" "$start" "$end"
  concat "$stage/ca.crt" "$stage/issuing/ca.crt" "$stage/root/ca.crt"
  chmod 600 "$stage/root/ca.key" "$stage/issuing/ca.key"

  for d in root issuing ca.crt; do mv -- "$stage/$d" "$DIR/$d"; done
  gen_crl "$DIR/root" "$ROOT_CRL_DAYS"
  gen_crl "$DIR/issuing" "$CRL_DAYS"
  printf '%s\n' "$fed" >"$stage/federation"
  mv -- "$stage/federation" "$DIR/federation"
  echo "federation $fed: root CA, issuing CA and trust bundle in $DIR"
}

# Options shared by node and client.
OPT_SIREN="" OPT_DAYS=$LEAF_DAYS OPT_NB="" OPT_NA="" OPT_CSR="" OPT_NAME="" OPT_ROLE=""
OPT_SANS=()
parse_leaf_options() {
  local cmd=$1 e
  shift
  while (($#)); do
    case $cmd:$1 in
      *:--siren) need_value "$@"; OPT_SIREN=$2; shift 2 ;;
      *:--days) need_value "$@"; check_days "$2"; OPT_DAYS=$2; shift 2 ;;
      *:--not-before) need_value "$@"; time_to_epoch e "$2"; OPT_NB=$2; shift 2 ;;
      *:--not-after) need_value "$@"; time_to_epoch e "$2"; OPT_NA=$2; shift 2 ;;
      *:--dir) need_value "$@"; DIR=$2; shift 2 ;;
      node:--dns) need_value "$@"; check_dns "$2"; OPT_SANS+=("DNS:$2"); shift 2 ;;
      node:--ip) need_value "$@"; check_ip "$2"; OPT_SANS+=("IP:$2"); shift 2 ;;
      node:--csr) need_value "$@"; OPT_CSR=$2; shift 2 ;;
      client:--name) need_value "$@"; OPT_NAME=$2; shift 2 ;;
      client:--role) need_value "$@"; OPT_ROLE=$2; shift 2 ;;
      *) usage_error "$cmd: unknown argument \"$1\"" ;;
    esac
  done
  [[ -n $OPT_SIREN ]] || usage_error "$cmd: --siren SIREN is required"
  check_siren "$OPT_SIREN"
}

# Enrolls a leaf into a new directory. $1: node|client, $2: destination directory,
# $3: subject, $4: URI SAN; then the other SANs.
enroll() {
  local kind=$1 dest=$2 subj=$3 uri=$4 where
  shift 4
  rel where "$dest"
  [[ ! -e $dest ]] ||
    die "$where already exists (use 'renew $where'; to re-enroll, revoke it and remove the directory)"
  if [[ -n $OPT_CSR ]]; then check_csr "$OPT_CSR"; fi
  compute_validity "$OPT_DAYS" "$OPT_NB" "$OPT_NA"

  # Build in a staging directory, then rename it into place.
  local stage="${dest%/*}/.${dest##*/}.$$"
  CLEANUP+=("$stage")
  mkdir -p -- "$stage"
  if [[ -n $OPT_CSR ]]; then
    concat "$stage/tls.csr" "$OPT_CSR"
    concat "$WORK/leaf.csr" "$OPT_CSR"
  else
    # openssl writes -keyout files with mode 0600.
    write_req_config
    ossl req -new -config "$WORK/req.cnf" -newkey ED25519 -nodes -keyout "$stage/tls.key" \
      -subj "$subj" -out "$WORK/leaf.csr"
  fi
  write_leaf_ext "$WORK/leaf.ext" "$kind" "$uri" "$@"
  issue "$DIR/issuing" "$WORK/leaf.csr" "$WORK/leaf.ext" "$subj" "$WORK/leaf.crt" "$START" "$END"
  concat "$stage/tls.crt" "$WORK/leaf.crt" "$DIR/issuing/ca.crt"
  concat "$stage/ca.crt" "$DIR/ca.crt"
  [[ ! -e $dest ]] || die "$where was created concurrently"
  mv -- "$stage" "$dest"
  printf '%s %s: %s (serial %s, valid %s to %s)\n' "$kind" "$uri" "$where" \
    "$ISSUED_SERIAL" "$START" "$END"
}

cmd_node() {
  parse_leaf_options node "$@"
  require_pki
  if ((${#OPT_SANS[@]} == 0)); then OPT_SANS=(DNS:localhost IP:127.0.0.1); fi
  enroll node "$DIR/nodes/$OPT_SIREN" "/O=$OPT_SIREN/CN=$OPT_SIREN" \
    "spiffe://$FEDERATION/collectivite/$OPT_SIREN" "${OPT_SANS[@]}"
}

cmd_client() {
  parse_leaf_options client "$@"
  [[ -n $OPT_NAME ]] || usage_error "client: --name NAME is required"
  [[ -n $OPT_ROLE ]] || usage_error "client: --role reader|writer|admin is required"
  check_client_name "$OPT_NAME"
  check_role "$OPT_ROLE"
  require_pki
  enroll client "$DIR/clients/$OPT_SIREN/$OPT_NAME" "/O=$OPT_SIREN/OU=$OPT_ROLE/CN=$OPT_NAME" \
    "spiffe://$FEDERATION/collectivite/$OPT_SIREN/client/$OPT_NAME"
}

# Reads leaf certificate $1 of this federation: sets LEAF_URI, LEAF_KIND (node|client),
# LEAF_SIREN, LEAF_NAME, LEAF_ROLE, LEAF_SUBJ and LEAF_SANS (DNS:x, IP:x).
LEAF_URI="" LEAF_KIND="" LEAF_SIREN="" LEAF_NAME="" LEAF_ROLE="" LEAF_SUBJ=""
LEAF_SANS=()
read_leaf() {
  local crt=$1 out e re subject
  out=$(ossl x509 -in "$crt" -noout -subject -nameopt RFC2253 -ext subjectAltName)
  subject=$(sed -n 's/^subject=//p' <<<"$out")
  LEAF_URI="" LEAF_SANS=()
  while IFS= read -r e; do
    case $e in
      URI:*) LEAF_URI=${e#URI:} ;;
      DNS:*) LEAF_SANS+=("$e") ;;
      IPAddress:*) LEAF_SANS+=("IP:${e#IPAddress:}") ;;
      "") ;;
      *) die "$crt: unexpected subjectAltName entry $e" ;;
    esac
  done < <(sed -n '/Subject Alternative Name/{n;p}' <<<"$out" | tr -d ' ' | tr ',' '\n')
  re="^spiffe://([a-z0-9._-]+)/collectivite/([0-9]{9})(/client/([a-z0-9._-]{1,64}))?$"
  [[ $LEAF_URI =~ $re ]] || die "$crt: no SPIFFE ID of the federation's form (found \"$LEAF_URI\")"
  [[ ${BASH_REMATCH[1]} == "$FEDERATION" ]] ||
    die "$crt belongs to federation \"${BASH_REMATCH[1]}\", not \"$FEDERATION\""
  LEAF_SIREN=${BASH_REMATCH[2]}
  LEAF_NAME=${BASH_REMATCH[4]}
  if [[ -n $LEAF_NAME ]]; then
    LEAF_KIND=client
    [[ $subject =~ (^|,)OU=([a-z]+)(,|$) ]] || die "$crt: no role (OU) in subject $subject"
    LEAF_ROLE=${BASH_REMATCH[2]}
    check_role "$LEAF_ROLE"
    LEAF_SUBJ="/O=$LEAF_SIREN/OU=$LEAF_ROLE/CN=$LEAF_NAME"
  else
    LEAF_KIND=node
    LEAF_ROLE=""
    LEAF_SUBJ="/O=$LEAF_SIREN/CN=$LEAF_SIREN"
  fi
}

cmd_renew() {
  local path="" days=$LEAF_DAYS
  while (($#)); do
    case $1 in
      --days) need_value "$@"; check_days "$2"; days=$2; shift 2 ;;
      --dir) need_value "$@"; DIR=$2; shift 2 ;;
      -*) usage_error "renew: unknown argument \"$1\"" ;;
      *) [[ -z $path ]] || usage_error "renew: more than one PATH"; path=$1; shift ;;
    esac
  done
  [[ -n $path ]] || usage_error "renew: PATH is required (nodes/<SIREN> or clients/<SIREN>/<NAME>)"
  require_pki
  local dir where serial pub
  resolve_cert_dir dir "$path"
  rel where "$dir"
  lock_pki
  read_leaf "$dir/tls.crt"
  serial_of serial "$dir/tls.crt"
  [[ $(db_status "$DIR/issuing" "$serial") != R ]] ||
    die "$where: certificate $serial is revoked; enroll a new key instead of renewing"
  pub=$(ossl x509 -in "$dir/tls.crt" -noout -pubkey)
  if [[ -f $dir/tls.key ]]; then
    [[ $(ossl pkey -in "$dir/tls.key" -pubout) == "$pub" ]] ||
      die "$where: tls.key does not match tls.crt"
    write_req_config
    ossl req -new -config "$WORK/req.cnf" -key "$dir/tls.key" -subj "$LEAF_SUBJ" -out "$WORK/leaf.csr"
  elif [[ -f $dir/tls.csr ]]; then
    [[ $(ossl req -in "$dir/tls.csr" -noout -pubkey) == "$pub" ]] ||
      die "$where: tls.csr does not match tls.crt"
    concat "$WORK/leaf.csr" "$dir/tls.csr"
  else
    die "$where: neither tls.key nor tls.csr to renew from"
  fi
  compute_validity "$days" "" ""
  write_leaf_ext "$WORK/leaf.ext" "$LEAF_KIND" "$LEAF_URI" ${LEAF_SANS[@]+"${LEAF_SANS[@]}"}
  issue "$DIR/issuing" "$WORK/leaf.csr" "$WORK/leaf.ext" "$LEAF_SUBJ" "$WORK/leaf.crt" "$START" "$END"
  concat "$WORK/tls.crt" "$WORK/leaf.crt" "$DIR/issuing/ca.crt"
  atomic_write "$dir/tls.crt" "$WORK/tls.crt"
  if ! cmp -s "$DIR/ca.crt" "$dir/ca.crt"; then atomic_write "$dir/ca.crt" "$DIR/ca.crt"; fi
  printf 'renewed %s: serial %s -> %s, valid %s to %s\n' "$where" "$serial" \
    "$ISSUED_SERIAL" "$START" "$END"
}

cmd_revoke() {
  local path="" serial="" reason=unspecified
  while (($#)); do
    case $1 in
      --reason) need_value "$@"; reason=$2; shift 2 ;;
      --serial) need_value "$@"; serial=${2^^}; shift 2 ;;
      --dir) need_value "$@"; DIR=$2; shift 2 ;;
      -*) usage_error "revoke: unknown argument \"$1\"" ;;
      *) [[ -z $path ]] || usage_error "revoke: more than one PATH"; path=$1; shift ;;
    esac
  done
  [[ " $REASONS " == *" $reason "* ]] ||
    usage_error "revoke: invalid reason \"$reason\" (one of ${REASONS// /, })"
  [[ -n $path || -n $serial ]] || usage_error "revoke: PATH or --serial HEX is required"
  [[ -z $path || -z $serial ]] || usage_error "revoke: give PATH or --serial, not both"
  require_pki
  lock_pki

  # targets: serial:file pairs to revoke.
  local cadir=$DIR/issuing what targets=() t summary
  if [[ -n $serial ]]; then
    [[ $serial =~ ^[0-9A-F]+$ ]] || usage_error "revoke: invalid serial \"$serial\""
    [[ -f $cadir/certs/$serial.pem ]] || die "serial $serial was not issued by this issuing CA"
    what="serial $serial"
    [[ $(db_status "$cadir" "$serial") == R ]] || targets=("$serial:$cadir/certs/$serial.pem")
  else
    local dir cur dn pub s
    resolve_cert_dir dir "$path"
    rel what "$dir"
    serial_of cur "$dir/tls.crt"
    if [[ -z $(db_status "$cadir" "$cur") ]]; then
      # Not in the database, e.g. issued by cert-manager with this issuing CA: openssl ca
      # adds it to the database as revoked.
      openssl verify -CAfile "$DIR/ca.crt" -no_check_time "$dir/tls.crt" >/dev/null 2>&1 ||
        die "$what: certificate $cur was not issued by this issuing CA"
      targets=("$cur:$dir/tls.crt")
    else
      # Every unrevoked certificate with the same subject and key (earlier renewals too).
      dn=$(awk -F'\t' -v s="$cur" '$4 == s { print $6 }' "$cadir/index.txt")
      pub=$(ossl x509 -in "$dir/tls.crt" -noout -pubkey)
      while IFS= read -r s; do
        if [[ -n $s && $(ossl x509 -in "$cadir/certs/$s.pem" -noout -pubkey) == "$pub" ]]; then
          targets+=("$s:$cadir/certs/$s.pem")
        fi
      done < <(awk -F'\t' -v dn="$dn" '$1 != "R" && $6 == dn { print $4 }' "$cadir/index.txt")
    fi
  fi

  write_ca_config "$cadir" "$WORK/ca.cnf"
  for t in ${targets[@]+"${targets[@]}"}; do
    ossl ca -config "$WORK/ca.cnf" -revoke "${t#*:}" -crl_reason "$reason"
  done
  gen_crl "$cadir" "$CRL_DAYS"
  crl_summary summary "$cadir/crl.pem"
  if ((${#targets[@]} == 0)); then
    printf '%s was already revoked; %s\n' "$what" "$summary"
  elif [[ -n $serial ]]; then
    printf 'revoked %s (%s); %s\n' "$what" "$reason" "$summary"
  else
    printf 'revoked %s (%s; serial' "$what" "$reason"
    printf ' %s' "${targets[@]%%:*}"
    printf '); %s\n' "$summary"
  fi
}

cmd_crl() {
  local days=$CRL_DAYS summary hash
  while (($#)); do
    case $1 in
      --days) need_value "$@"; check_days "$2"; days=$2; shift 2 ;;
      --dir) need_value "$@"; DIR=$2; shift 2 ;;
      *) usage_error "crl: unknown argument \"$1\"" ;;
    esac
  done
  require_pki
  lock_pki
  gen_crl "$DIR/issuing" "$days"
  if [[ -f $DIR/root/ca.key ]]; then
    gen_crl "$DIR/root" "$ROOT_CRL_DAYS"
  elif [[ -f $DIR/root/crl.pem ]]; then
    publish_crl "$DIR/root/crl.pem"
  fi
  crl_summary summary "$DIR/issuing/crl.pem"
  hash=$(ossl crl -in "$DIR/issuing/crl.pem" -noout -hash)
  printf 'issuing CA %s: issuing/crl.pem and crl/%s.r0\n' "$summary" "$hash"
}

cmd_show() {
  local path=""
  while (($#)); do
    case $1 in
      --dir) need_value "$@"; DIR=$2; shift 2 ;;
      -*) usage_error "show: unknown argument \"$1\"" ;;
      *) [[ -z $path ]] || usage_error "show: more than one PATH"; path=$1; shift ;;
    esac
  done
  [[ -n $path ]] || usage_error "show: PATH is required"
  default_dir
  if [[ -d $DIR ]]; then set_dir_absolute; fi
  make_work_dir
  local dir crt
  resolve_cert_dir dir "$path"
  crt=$dir/tls.crt
  [[ -f $dir/ca.crt ]] || die "no ca.crt in $dir"

  # Split tls.crt into the leaf and the rest of the chain.
  : >"$WORK/chain.pem"
  awk -v leaf="$WORK/leaf.pem" -v chain="$WORK/chain.pem" '
    /-----BEGIN CERTIFICATE-----/ { n++ }
    n == 1 { print > leaf }
    n > 1 { print > chain }' "$crt"
  [[ -s $WORK/leaf.pem ]] || die "no certificate in $crt"

  local info subject sans algo serial nb na n_chain purpose status=0 out crl summary
  info=$(ossl x509 -in "$WORK/leaf.pem" -noout -text -nameopt RFC2253 \
    -subject -serial -startdate -enddate)
  subject=$(sed -n 's/^subject=//p' <<<"$info")
  sans=$(sed -n '/Subject Alternative Name/{n;s/^ *//;p}' <<<"$info")
  algo=$(sed -n 's/^ *Public Key Algorithm: *//p' <<<"$info" | head -n 1)
  serial=$(sed -n 's/^serial=//p' <<<"$info")
  nb=$(sed -n 's/^notBefore=//p' <<<"$info")
  na=$(sed -n 's/^notAfter=//p' <<<"$info")
  n_chain=$(grep -c 'BEGIN CERTIFICATE' "$WORK/chain.pem" || true)
  purpose=sslclient
  if grep -q 'TLS Web Server Authentication' <<<"$info"; then purpose=sslserver; fi
  printf 'certificate: %s\n' "$crt"
  printf 'subject:     %s\n' "$subject"
  printf 'SANs:        %s\n' "$sans"
  printf 'key:         %s\n' "$algo"
  printf 'serial:      %s\n' "$serial"
  printf 'not before:  %s\n' "$nb"
  printf 'not after:   %s\n' "$na"
  printf 'chain:       leaf + %d intermediate(s); trust bundle %s\n' "$n_chain" "$dir/ca.crt"

  if out=$(openssl verify -CAfile "$dir/ca.crt" -untrusted "$WORK/chain.pem" \
    -purpose "$purpose" "$WORK/leaf.pem" 2>&1); then
    printf 'verify:      OK (purpose %s)\n' "$purpose"
  else
    printf 'verify:      FAILED: %s\n' "$(grep -m1 '^error' <<<"$out" || tail -n 1 <<<"$out")"
    status=1
  fi

  crl=$DIR/issuing/crl.pem
  if [[ ! -f $crl ]]; then
    printf 'revocation:  not checked (no %s)\n' "$crl"
  else
    crl_summary summary "$crl"
    # Validity times are reported above; -no_check_time isolates revocation.
    if out=$(openssl verify -CAfile "$dir/ca.crt" -untrusted "$WORK/chain.pem" -no_check_time \
      -crl_check -CRLfile "$crl" "$WORK/leaf.pem" 2>&1); then
      printf 'revocation:  not revoked (%s)\n' "$summary"
    elif grep -q 'certificate revoked' <<<"$out"; then
      printf 'revocation:  REVOKED (%s)\n' "$summary"
      status=1
    else
      printf 'revocation:  FAILED: %s\n' "$(grep -m1 '^error' <<<"$out" || tail -n 1 <<<"$out")"
      status=1
    fi
  fi
  return "$status"
}

# --- Main --------------------------------------------------------------------------

main() {
  local args=() a
  for a in "$@"; do
    case $a in
      --dir=*) args+=(--dir "${a#--dir=}") ;;
      *) args+=("$a") ;;
    esac
  done
  set -- ${args[@]+"${args[@]}"}
  while (($#)); do
    case $1 in
      --dir) need_value "$@"; DIR=$2; shift 2 ;;
      -h | --help | help) usage; exit 0 ;;
      -*) usage_error "unknown option \"$1\"" ;;
      *) break ;;
    esac
  done
  if (($# == 0)); then
    usage >&2
    exit 2
  fi
  local cmd=$1
  shift
  case $cmd in
    init) cmd_init "$@" ;;
    node) cmd_node "$@" ;;
    client) cmd_client "$@" ;;
    renew) cmd_renew "$@" ;;
    revoke) cmd_revoke "$@" ;;
    crl) cmd_crl "$@" ;;
    show) cmd_show "$@" ;;
    *) usage_error "unknown command \"$cmd\"" ;;
  esac
}

main "$@"
