#!/usr/bin/env bash
# Tests of pki.sh and dev-certs.sh. Runs in a temporary directory; prints the failed
# checks on stderr and ends with one line "N passed, M failed" (exit 1 on failures).
#
# Usage: bash certs/test-pki.sh
# PKI_TEST_MAX_SECONDS: time limit of dev-certs.sh for 5 SIRENs (default 10; the target
# on an idle machine is under 5).
set -uo pipefail
export TZ=UTC

case ${BASH_SOURCE[0]} in
  */*) HERE=$(cd "${BASH_SOURCE[0]%/*}" && pwd) ;;
  *) HERE=$PWD ;;
esac
PKI=$HERE/pki.sh
DEV=$HERE/dev-certs.sh
MAX_SECONDS=${PKI_TEST_MAX_SECONDS:-10}

T=$(mktemp -d "${TMPDIR:-/tmp}/test-pki.XXXXXX")
SERVER_PID=""
cleanup() {
  if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null; fi
  rm -rf -- "$T"
}
trap cleanup EXIT

D=$T/pki
FED=test.interco
LYON=200046977 # Métropole de Lyon
PARIS=217500016
passed=0 failed=0

pass() { passed=$((passed + 1)); }
fail() {
  failed=$((failed + 1))
  printf 'FAIL: %s\n' "$1" >&2
  if [[ -s $T/out ]]; then sed 's/^/    /' "$T/out" | head -n 8 >&2; fi
}

# check NAME COMMAND...: the command succeeds.
check() {
  local name=$1
  shift
  if "$@" >"$T/out" 2>&1; then pass; else fail "$name"; fi
}

# check_fails NAME COMMAND...: the command fails.
check_fails() {
  local name=$1
  shift
  if "$@" >"$T/out" 2>&1; then fail "$name (unexpectedly succeeded)"; else pass; fi
}

# check_output NAME REGEX COMMAND...: the command's output (stdout and stderr)
# matches the extended regular expression, whatever its exit status.
check_output() {
  local name=$1 re=$2
  shift 2
  "$@" >"$T/out" 2>&1
  if grep -Eq -- "$re" "$T/out"; then pass; else fail "$name (no match for /$re/)"; fi
}

check_equal() {
  : >"$T/out"
  if [[ $2 == "$3" ]]; then pass; else fail "$1 (\"$2\" != \"$3\")"; fi
}

pki() { bash "$PKI" --dir "$D" "$@"; }

# Splits tls.crt of certificate directory $1 into $T/leaf.pem and $T/chain.pem.
split_chain() {
  awk -v leaf="$T/leaf.pem" -v chain="$T/chain.pem" '
    /-----BEGIN CERTIFICATE-----/ { n++ }
    n == 1 { print > leaf }
    n > 1 { print > chain }' "$1/tls.crt"
}

# verify DIR [openssl verify options...]: verifies DIR's leaf against DIR/ca.crt.
verify() {
  local dir=$1
  shift
  split_chain "$dir"
  openssl verify -CAfile "$dir/ca.crt" -untrusted "$T/chain.pem" "$@" "$T/leaf.pem"
}

text() { openssl x509 -in "$1" -noout -text; }
has_san() { openssl x509 -in "$1" -noout -ext subjectAltName | grep -Eq -- "$2"; }
serial() { openssl x509 -in "$1" -noout -serial; }
pubkey() { openssl x509 -in "$1" -noout -pubkey; }
mode() { stat -c %a "$1"; }
count_certs() { grep -c -- '-----BEGIN CERTIFICATE-----' "$1"; }

# --- init --------------------------------------------------------------------------

check "init creates the federation" pki init --federation "$FED"
for f in federation ca.crt root/ca.key root/ca.crt issuing/ca.key issuing/ca.crt \
  issuing/crl.pem issuing/index.txt issuing/serial issuing/crlnumber; do
  check "init writes $f" test -f "$D/$f"
done
check_equal "federation file" "$(cat "$D/federation")" "$FED"
check_equal "root key mode" "$(mode "$D/root/ca.key")" 600
check_equal "issuing key mode" "$(mode "$D/issuing/ca.key")" 600
bundle_sum=$(sha256sum <"$D/ca.crt")
check_output "init is idempotent" "already initialized" pki init --federation "$FED"
check_equal "idempotent init keeps the bundle" "$(sha256sum <"$D/ca.crt")" "$bundle_sum"
check_fails "init refuses another federation in the same directory" pki init --federation other
check_fails "init refuses an invalid federation name" \
  bash "$PKI" --dir "$T/bad" init --federation "Bad Name"
check "issuing CA is signed by the root" openssl verify -CAfile "$D/root/ca.crt" "$D/issuing/ca.crt"
check_output "issuing CA: critical CA:TRUE, pathlen:0" \
  'Basic Constraints: critical' text "$D/issuing/ca.crt"
check_output "issuing CA: pathlen:0" 'CA:TRUE, pathlen:0' text "$D/issuing/ca.crt"
check_output "issuing CA: critical keyCertSign, cRLSign" \
  'Key Usage: critical' text "$D/issuing/ca.crt"
check_output "issuing CA: keyCertSign, cRLSign" 'Certificate Sign, CRL Sign' text "$D/issuing/ca.crt"
check_output "root CA: CA:TRUE" 'CA:TRUE' text "$D/root/ca.crt"
check_output "root CA is self-signed" "^issuer=O = $FED, CN = $FED Root CA" \
  openssl x509 -in "$D/root/ca.crt" -noout -issuer
check_equal "bundle holds issuing CA and root" "$(count_certs "$D/ca.crt")" 2
check_output "empty CRL of the issuing CA" 'No Revoked Certificates' \
  openssl crl -in "$D/issuing/crl.pem" -noout -text

# --- node --------------------------------------------------------------------------

N=$D/nodes/$LYON
check "node enrollment" pki node --siren "$LYON"
check "node tls.key" test -s "$N/tls.key"
check_equal "node tls.key mode" "$(mode "$N/tls.key")" 600
check_output "node key is Ed25519" '^ED25519 Private-Key' openssl pkey -in "$N/tls.key" -noout -text
check_equal "tls.crt is leaf + issuing CA" "$(count_certs "$N/tls.crt")" 2
check "node ca.crt is the bundle" cmp -s "$N/ca.crt" "$D/ca.crt"
check_equal "tls.key matches tls.crt" "$(openssl pkey -in "$N/tls.key" -pubout)" "$(pubkey "$N/tls.crt")"
check_output "node chain verifies" ': OK$' verify "$N"
check "node verifies as TLS server" verify "$N" -purpose sslserver
check "node verifies as TLS client" verify "$N" -purpose sslclient
check "node verifies against the CRL" verify "$N" -crl_check -CRLfile "$D/issuing/crl.pem"
split_chain "$N"
check_output "node URI SAN" "URI:spiffe://$FED/collectivite/$LYON(,|$)" text "$T/leaf.pem"
check_output "node default DNS SAN" 'DNS:localhost' text "$T/leaf.pem"
check_output "node default IP SAN" 'IP Address:127\.0\.0\.1' text "$T/leaf.pem"
check_output "node EKU" 'TLS Web Server Authentication, TLS Web Client Authentication' \
  text "$T/leaf.pem"
check_output "node key usage is critical" 'Key Usage: critical' text "$T/leaf.pem"
check_output "node key usage" '^ +Digital Signature$' text "$T/leaf.pem"
check_output "node is not a CA" 'CA:FALSE' text "$T/leaf.pem"
check_output "node certificate is in the CA database" "$(serial "$N/tls.crt" | cut -d= -f2)" \
  cat "$D/issuing/index.txt"

check_output "invalid SIREN (Luhn) is refused" 'invalid SIREN "123456789".*Luhn' \
  pki node --siren 123456789
check_fails "invalid SIREN fails" pki node --siren 123456789
check_fails "no directory for an invalid SIREN" test -e "$D/nodes/123456789"
check_output "SIREN with 8 digits is refused" 'must be 9 digits' pki node --siren 20004697
check_output "SIREN with letters is refused" 'must be 9 digits' pki node --siren 20004697A
check "La Poste SIREN exception (356, digit sum multiple of 5)" pki node --siren 356000001
check_fails "356 SIREN without the exception is refused" pki node --siren 356000002
check_output "second enrollment is refused" 'already exists' pki node --siren "$LYON"
check "node with explicit SANs" pki node --siren "$PARIS" --dns node.paris.example.fr \
  --dns localhost --ip 10.1.2.3 --ip ::1 --days 30
split_chain "$D/nodes/$PARIS"
check_output "explicit DNS SAN" 'DNS:node\.paris\.example\.fr, DNS:localhost' text "$T/leaf.pem"
check_output "explicit IP SANs" 'IP Address:10\.1\.2\.3, IP Address:0:0:0:0:0:0:0:1' text "$T/leaf.pem"
check_fails "no default IP SAN when SANs are given" has_san "$T/leaf.pem" 'IP Address:127\.0\.0\.1'
check_fails "invalid DNS name is refused" pki node --siren 243500139 --dns 'bad,name'
check_fails "invalid IP is refused" pki node --siren 243500139 --ip 'not-an-ip'
check_fails "certificate outliving the issuing CA is refused" pki node --siren 243500139 --days 4000

# --- client ------------------------------------------------------------------------

C=$D/clients/$LYON/app
check "client certificate" pki client --siren "$LYON" --name app --role writer
check_equal "client tls.key mode" "$(mode "$C/tls.key")" 600
check_output "client key is Ed25519" '^ED25519 Private-Key' openssl pkey -in "$C/tls.key" -noout -text
check "client chain verifies as TLS client" verify "$C" -purpose sslclient
check_fails "client does not verify as TLS server" verify "$C" -purpose sslserver
split_chain "$C"
check_output "client URI SAN" "URI:spiffe://$FED/collectivite/$LYON/client/app$" text "$T/leaf.pem"
check_output "client subject O, OU, CN" "^subject=O = $LYON, OU = writer, CN = app$" \
  openssl x509 -in "$T/leaf.pem" -noout -subject
check_output "client EKU is clientAuth only" 'TLS Web Client Authentication$' text "$T/leaf.pem"
check_fails "client name with capitals is refused" pki client --siren "$LYON" --name App --role reader
check_fails "client name of 65 characters is refused" \
  pki client --siren "$LYON" --name "$(printf 'a%.0s' {1..65})" --role reader
check_fails "client name '..' is refused" pki client --siren "$LYON" --name .. --role reader
check_fails "unknown role is refused" pki client --siren "$LYON" --name x --role root
check_fails "client needs --role" pki client --siren "$LYON" --name x
check "admin client" pki client --siren "$LYON" --name admin --role admin
check "reader client with a 64-character name" \
  pki client --siren "$LYON" --name "$(printf 'r%.0s' {1..64})" --role reader

# --- validity ----------------------------------------------------------------------

check "expired certificate is issued" \
  pki client --siren "$LYON" --name expired --role reader --not-after 20200101000000Z
check_output "expired certificate fails openssl verify" 'certificate has expired' \
  verify "$D/clients/$LYON/expired"
check_fails "expired certificate: verify fails" verify "$D/clients/$LYON/expired"
future=$(date -u -d '+1 year' +%Y%m%d000000Z)
check "not-yet-valid certificate is issued" \
  pki client --siren "$LYON" --name future --role reader --not-before "$future" --days 2
check_output "not-yet-valid certificate fails openssl verify" 'certificate is not yet valid' \
  verify "$D/clients/$LYON/future"
check_output "--not-before with --days" \
  "notAfter=$(date -u -d "${future:0:8} + 2 days" '+%b %e 00:00:00 %Y GMT')" \
  openssl x509 -in "$D/clients/$LYON/future/tls.crt" -noout -enddate
check_fails "not-after before not-before is refused" pki client --siren "$LYON" --name bad \
  --role reader --not-before 20300101000000Z --not-after 20290101000000Z
check_fails "malformed time is refused" pki client --siren "$LYON" --name bad --role reader \
  --not-after 2030-01-01

# --- enrollment from a CSR ---------------------------------------------------------

printf '[req]\ndistinguished_name = dn\n[dn]\n' >"$T/req.cnf"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/ec.key" 2>/dev/null
openssl req -new -config "$T/req.cnf" -key "$T/ec.key" -subj /CN=ignored -out "$T/ec.csr"
check "node from an EC P-256 CSR" pki node --siren 243500139 --csr "$T/ec.csr"
check_fails "no tls.key for a CSR enrollment" test -e "$D/nodes/243500139/tls.key"
check_equal "certificate carries the CSR's key" "$(pubkey "$D/nodes/243500139/tls.crt")" \
  "$(openssl pkey -in "$T/ec.key" -pubout)"
check "CSR-enrolled node verifies" verify "$D/nodes/243500139" -purpose sslserver
check_output "subject is set by the CA, not the CSR" "^subject=O = 243500139, CN = 243500139$" \
  openssl x509 -in "$D/nodes/243500139/tls.crt" -noout -subject
openssl genpkey -algorithm ED25519 -out "$T/ed.key"
openssl req -new -config "$T/req.cnf" -key "$T/ed.key" -subj /CN=x -out "$T/ed.csr"
check "node from an Ed25519 CSR" pki node --siren 243300316 --csr "$T/ed.csr"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/rsa.key" 2>/dev/null
openssl req -new -config "$T/req.cnf" -key "$T/rsa.key" -subj /CN=x -out "$T/rsa.csr"
check_output "RSA CSR is refused" 'not accepted' pki node --siren 243100518 --csr "$T/rsa.csr"
check_fails "no directory for a refused CSR" test -e "$D/nodes/243100518"
echo garbage >"$T/garbage.csr"
check_fails "unreadable CSR is refused" pki node --siren 243100518 --csr "$T/garbage.csr"

# --- renew -------------------------------------------------------------------------

old_serial=$(serial "$N/tls.crt")
old_pub=$(pubkey "$N/tls.crt")
old_key=$(sha256sum <"$N/tls.key")
old_san=$(openssl x509 -in "$N/tls.crt" -noout -ext subjectAltName)
check "renew a node" pki renew "nodes/$LYON"
new_serial=$(serial "$N/tls.crt")
if [[ $new_serial != "$old_serial" ]]; then pass; else fail "renew changes the serial"; fi
check_equal "renew keeps the public key" "$(pubkey "$N/tls.crt")" "$old_pub"
check_equal "renew keeps tls.key" "$(sha256sum <"$N/tls.key")" "$old_key"
check_equal "renew keeps the SANs" "$(openssl x509 -in "$N/tls.crt" -noout -ext subjectAltName)" "$old_san"
check "renewed node verifies" verify "$N" -purpose sslserver
files_in() { find "$1" -mindepth 1 -printf '%f\n' | sort | tr '\n' ' '; }
check_equal "renew leaves no temporary file" "$(files_in "$N")" "ca.crt tls.crt tls.key "
check "renew a client by absolute path" pki renew "$C/"
check_output "renewed client keeps its subject" "^subject=O = $LYON, OU = writer, CN = app$" \
  openssl x509 -in "$C/tls.crt" -noout -subject
check "renew a CSR-enrolled node" pki renew nodes/243500139 --days 7
check_equal "CSR-enrolled renewal keeps the key" "$(pubkey "$D/nodes/243500139/tls.crt")" \
  "$(openssl pkey -in "$T/ec.key" -pubout)"
check_fails "renew of an unknown directory fails" pki renew nodes/999999999

# --- revoke and CRL ----------------------------------------------------------------

check "node passes -crl_check before revocation" verify "$N" -crl_check -CRLfile "$D/issuing/crl.pem"
check_output "revoke" 'revoked nodes/200046977 \(keyCompromise' \
  pki revoke "nodes/$LYON" --reason keyCompromise
check_output "revoked node fails openssl verify -crl_check" 'certificate revoked' \
  verify "$N" -crl_check -CRLfile "$D/issuing/crl.pem"
check_fails "revoked node: verify -crl_check fails" verify "$N" -crl_check -CRLfile "$D/issuing/crl.pem"
check_output "CRL lists the current serial" "Serial Number: ${new_serial#serial=}" \
  openssl crl -in "$D/issuing/crl.pem" -noout -text
check_output "CRL lists the serial before renewal (same key)" "Serial Number: ${old_serial#serial=}" \
  openssl crl -in "$D/issuing/crl.pem" -noout -text
check_output "CRL records the reason" 'Key Compromise' openssl crl -in "$D/issuing/crl.pem" -noout -text
crl_hash=$(openssl crl -in "$D/issuing/crl.pem" -noout -hash)
check "hashed CRL copy crl/<hash>.r0" cmp -s "$D/crl/$crl_hash.r0" "$D/issuing/crl.pem"
check_fails "revoked node fails with -CApath crl/" \
  openssl verify -CAfile "$D/ca.crt" -CApath "$D/crl" -crl_check -untrusted "$T/chain.pem" "$T/leaf.pem"
check "other node passes with -CApath crl/ and -crl_check_all" \
  verify "$D/nodes/$PARIS" -CApath "$D/crl" -crl_check_all
check "other node passes -crl_check" verify "$D/nodes/$PARIS" -crl_check -CRLfile "$D/issuing/crl.pem"
check_output "revoke is idempotent" 'already revoked' pki revoke "nodes/$LYON"
check_output "renew of a revoked certificate is refused" 'revoked' pki renew "nodes/$LYON"
check_fails "renew of a revoked certificate fails" pki renew "nodes/$LYON"
check_fails "unknown revocation reason is refused" pki revoke "nodes/$PARIS" --reason because
admin_serial=$(serial "$D/clients/$LYON/admin/tls.crt")
check "revoke by serial" pki revoke --serial "${admin_serial#serial=}" --reason superseded
check_fails "client revoked by serial fails -crl_check" \
  verify "$D/clients/$LYON/admin" -crl_check -CRLfile "$D/issuing/crl.pem"
# A certificate signed by the issuing CA outside pki.sh (as cert-manager would).
X=$T/external
mkdir -p "$X"
openssl genpkey -algorithm ED25519 -out "$X/tls.key"
openssl req -new -config "$T/req.cnf" -key "$X/tls.key" -subj /CN=ext -out "$T/x.csr"
printf 'subjectAltName = URI:spiffe://%s/collectivite/%s/client/ext\nextendedKeyUsage = clientAuth\n' \
  "$FED" "$LYON" >"$T/x.ext"
openssl x509 -req -in "$T/x.csr" -CA "$D/issuing/ca.crt" -CAkey "$D/issuing/ca.key" \
  -CAserial "$T/x.srl" -CAcreateserial -days 5 -extfile "$T/x.ext" -out "$T/x.crt" 2>/dev/null
cat "$T/x.crt" "$D/issuing/ca.crt" >"$X/tls.crt"
cp "$D/ca.crt" "$X/ca.crt"
check "external certificate verifies" verify "$X" -crl_check -CRLfile "$D/issuing/crl.pem"
check "revoke a certificate missing from the database" pki revoke "$X"
check_fails "external certificate revoked" verify "$X" -crl_check -CRLfile "$D/issuing/crl.pem"
mkdir -p "$T/self"
openssl req -x509 -newkey ED25519 -nodes -keyout "$T/self/tls.key" -subj /CN=self \
  -config "$T/req.cnf" -out "$T/self/tls.crt" 2>/dev/null
check_output "revoke refuses a certificate of another CA" 'not issued by this issuing CA' \
  pki revoke "$T/self"

crl_number() { openssl crl -in "$D/issuing/crl.pem" -noout -crlnumber | cut -d= -f2; }
before=$(crl_number)
check "crl regenerates the CRL" pki crl
after=$(crl_number)
if ((16#${after#0x} == 16#${before#0x} + 1)); then pass; else fail "crl increments the CRL number"; fi

# --- show --------------------------------------------------------------------------

check_output "show prints the SPIFFE ID" "URI:spiffe://$FED/collectivite/$PARIS" pki show "nodes/$PARIS"
check "show succeeds for a valid certificate" pki show "nodes/$PARIS"
check_output "show reports a revoked certificate" 'REVOKED' pki show "nodes/$LYON"
check_fails "show fails for a revoked certificate" pki show "nodes/$LYON"
check_output "show reports an expired certificate" 'certificate has expired' \
  pki show "clients/$LYON/expired"

# --- mutual TLS with Ed25519 -------------------------------------------------------

# s_server with a node certificate, s_client with a client certificate; the server
# requires a client certificate that chains to the bundle.
start_server() {
  local dir=$1 port tries=0
  while ((tries++ < 5)); do
    port=$((20000 + RANDOM % 40000))
    openssl s_server -accept "127.0.0.1:$port" -cert "$dir/tls.crt" -key "$dir/tls.key" \
      -cert_chain "$D/issuing/ca.crt" -CAfile "$dir/ca.crt" -Verify 3 -verify_return_error \
      -www >"$T/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 50); do
      if grep -q ACCEPT "$T/server.log"; then
        PORT=$port
        return 0
      fi
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
  done
  return 1
}
stop_server() {
  if [[ -n $SERVER_PID ]]; then
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
  fi
}
connect() { # connect CLIENT_DIR: one HTTP request over mTLS
  printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$PORT" \
    -servername localhost -verify_hostname localhost -CAfile "$1/ca.crt" \
    -cert "$1/tls.crt" -key "$1/tls.key" -verify_return_error -ign_eof 2>&1
}
http_ok() { connect "$1" | grep -aq 'HTTP/1.0 200'; }

PORT=""
if command -v timeout >/dev/null && start_server "$D/nodes/$PARIS"; then
  check "Ed25519 mTLS request (node server, client certificate)" http_ok "$C"
  check_output "server signs with Ed25519" 'Peer signature type: [Ee][Dd]25519' connect "$C"
  check_output "server certificate verified by the client" 'Verify return code: 0 \(ok\)' connect "$C"
  bash "$PKI" --dir "$T/other" init --federation other.interco >/dev/null
  bash "$PKI" --dir "$T/other" client --siren "$LYON" --name app --role writer >/dev/null
  cp "$D/ca.crt" "$T/other/clients/$LYON/app/ca.crt" # trusts the server, not trusted by it
  check_fails "client of another federation is rejected" http_ok "$T/other/clients/$LYON/app"
  stop_server
else
  fail "could not start openssl s_server"
fi

# --- dev-certs.sh ------------------------------------------------------------------

DC=$T/dev
start=$EPOCHREALTIME
check "dev-certs for 5 SIRENs" bash "$DEV" "$DC" "$FED" 200046977 217500016 243500139 243300316 243100518
elapsed=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
if awk -v e="$elapsed" -v m="$MAX_SECONDS" 'BEGIN { exit !(e < m) }'; then pass; else
  fail "dev-certs for 5 SIRENs took ${elapsed}s (limit ${MAX_SECONDS}s)"
fi
cp "$T/out" "$T/dev.out"
check_output "dev-certs creates 20 certificates" '20 created, 0 renewed, 0 unchanged' cat "$T/dev.out"
for s in 200046977 217500016 243500139 243300316 243100518; do
  check "dev-certs node $s verifies" verify "$DC/nodes/$s" -purpose sslserver
done
check "dev-certs admin client verifies" verify "$DC/clients/243500139/admin" -purpose sslclient
check_output "dev-certs admin role" "OU = admin, CN = admin" \
  openssl x509 -in "$DC/clients/243500139/admin/tls.crt" -noout -subject
check_output "dev-certs app role" "OU = writer, CN = app" \
  openssl x509 -in "$DC/clients/243500139/app/tls.crt" -noout -subject
check_output "dev-certs viewer role" "OU = reader, CN = viewer" \
  openssl x509 -in "$DC/clients/243500139/viewer/tls.crt" -noout -subject
sums() { find "$DC" -type f ! -name .lock -print0 | sort -z | xargs -0 sha256sum; }
before=$(sums)
check_output "dev-certs is idempotent" '0 created, 0 renewed, 20 unchanged' \
  bash "$DEV" "$DC" "$FED" 200046977 217500016 243500139 243300316 243100518
check_equal "dev-certs second run changes no file" "$(sums)" "$before"
check_output "dev-certs adds a new SIREN only" '4 created, 0 renewed, 4 unchanged' \
  bash "$DEV" "$DC" "$FED" 200046977 244400404
check_fails "dev-certs refuses another federation" bash "$DEV" "$DC" other 200046977
check_fails "dev-certs refuses an invalid SIREN" bash "$DEV" "$DC" "$FED" 123456789

printf '%d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
