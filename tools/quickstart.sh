#!/usr/bin/env bash
# The main job (the README's first command): installs what is missing, builds, creates dev
# certificates, and starts a local federation of three interco nodes replicating over
# mutual TLS, on real open data:
#   - the Communauté d'agglomération du Bassin de Bourg-en-Bresse (EPCI, SIREN 200071751),
#     the hub, which holds every registry and loads ~75,000 real records;
#   - two of its member communes, Bourg-en-Bresse (210100533) and Viriat (210104519), which
#     replicate only the shared "services" registry (partial replication).
# It shows a territorial query, then a write on one commune's node appearing on the
# others, and keeps the federation running until Ctrl-C.
#
#   INTERCO_RUN_DIR   state directory (default: .run/ in the repository)
#   INTERCO_PORT      first port (default 7443); each node uses 3 ports, 10 apart per node
#   INTERCO_DETACH=1  return once loaded, leaving the nodes running (pids in $RUN/*.pid)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
run=${INTERCO_RUN_DIR:-"$root/.run"}
base_port=${INTERCO_PORT:-7443}
federation=interco.local
epci=200071751       # CA du Bassin de Bourg-en-Bresse
bourg=210100533      # Bourg-en-Bresse (INSEE 01053)
viriat=210104519     # Viriat (INSEE 01451)
data=tools/data/fr

bash tools/deps.sh
echo "== building"
bash tools/build.sh "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -- interco_noded interco_cli
node_bin=build/node/interco-node
cli_bin=build/node/cli/interco

# Demo stores of an older store format are moved aside (the data is imported again).
store_format=3
if [[ -d $run ]] && [[ $(cat "$run/store-format" 2>/dev/null) != "$store_format" ]]; then
  for siren in "$epci" "$bourg" "$viriat"; do
    if [[ -d $run/$siren ]]; then
      mv "$run/$siren" "$run/$siren.format-old.$(date +%s)"
      echo "== moved the demo store of $siren aside (older store format)"
    fi
  done
fi
mkdir -p "$run"
echo "$store_format" >"$run/store-format"

echo "== dev certificates (federation $federation) in $run/certs"
mkdir -p "$run"
bash certs/dev-certs.sh "$run/certs" "$federation" "$epci" "$bourg" "$viriat" >/dev/null

for pidfile in "$run"/*.pid; do
  [[ -f $pidfile ]] || continue
  if kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "== stopping a node left running by a previous quick start"
    kill "$(cat "$pidfile")" || true
  fi
  rm -f "$pidfile"
done
sleep 0.5

declare -A api_port peer_port names
names[$epci]="CA du Bassin de Bourg-en-Bresse"
names[$bourg]="Bourg-en-Bresse"
names[$viriat]="Viriat"
i=0
for siren in "$epci" "$bourg" "$viriat"; do
  api_port[$siren]=$((base_port + 10 * i))
  peer_port[$siren]=$((base_port + 10 * i + 1))
  i=$((i + 1))
done
pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -f "$run"/*.pid
}
if [[ ${INTERCO_DETACH:-0} != 1 ]]; then trap stop EXIT INT TERM; fi

# start_node SIREN PEER...: the hub lists the communes, each commune lists the hub.
start_node() {
  local siren=$1
  shift
  local peers=()
  for p in "$@"; do peers+=("$p@127.0.0.1:${peer_port[$p]}"); done
  local IFS=,
  echo "== starting ${names[$siren]} ($siren): API 127.0.0.1:${api_port[$siren]}," \
    "peers on ${peer_port[$siren]}, health on $((api_port[$siren] + 2))"
  "$node_bin" --authority="$siren" --display_name="${names[$siren]}" \
    --federation="$federation" --data_dir="$run/$siren" --tls_dir="$run/certs/nodes/$siren" \
    --listen="127.0.0.1:${api_port[$siren]}" --health_listen="127.0.0.1:$((api_port[$siren] + 2))" \
    --peer_listen="127.0.0.1:${peer_port[$siren]}" --peers="${peers[*]}" \
    2>>"$run/$siren.log" &
  pids+=($!)
  echo $! >"$run/$siren.pid"
}
start_node "$epci" "$bourg" "$viriat"
start_node "$bourg" "$epci"
start_node "$viriat" "$epci"

# cli_as SIREN ARGS...: the CLI as that authority's admin client, against its node.
cli_as() {
  local siren=$1
  shift
  INTERCO_TLS_DIR="$run/certs/clients/$siren/admin" "$cli_bin" --addr="127.0.0.1:${api_port[$siren]}" "$@"
}
cli() { cli_as "$epci" "$@"; }
for siren in "$epci" "$bourg" "$viriat"; do
  for _ in $(seq 100); do
    if cli_as "$siren" info >/dev/null 2>&1; then break; fi
    sleep 0.1
  done
  if ! cli_as "$siren" info >/dev/null 2>&1; then
    echo "the node $siren did not start; its log:" >&2
    tail -20 "$run/$siren.log" >&2
    exit 1
  fi
done

# Creates a registry if it does not exist yet, then (idempotently) imports a CSV into it.
load() {
  local registry=$1 file=$2
  shift 2
  if ! cli registry get "$registry" >/dev/null 2>&1; then
    cli registry create "$registry" "tools/registries/$registry.json" >/dev/null
  fi
  printf '%-14s ' "$registry"
  cli import "$registry" "$data/$file" "$@"
}

echo "== loading real open data (Licence Ouverte; see $data/README.md)"
load communes communes.csv --key code --map codes_postaux=codesPostaux \
  --where_column type=commune-actuelle
load epci epci.csv --key code --map population=populationTotale --map membres_siren=membresSiren
load services annuaire-administration-2019-sample.csv --key id --map type=pivotLocal \
  --map commune=codeInseeActuel --map code_postal=codePostal --map ville=commune
load mediation lieux-mediation-numerique-aura.csv --key id --map commune=code_insee \
  --geo position=latitude,longitude --set_separator ';'
load associations associations-rna-import-01.csv --key id --map commune=codeInseeActuel \
  --map date_creation=date_creat
load equipements equipements-sportifs-res-2017-communes.csv --key ComInsee \
  --map nom=ComLib --map commune=codeInseeActuel --map "total=Nombre d'équipements sportifs" \
  --map "bassins_natation=01 - Bassin de natation" --map "courts_tennis=05 - Court de tennis" \
  --map "salles_multisports=19 - Salle multisports" \
  --map "terrains_grands_jeux=28 - Terrain de grands jeux"

echo
echo "== the communes replicate the shared registry \"services\" (owned by the EPCI)"
for siren in "$bourg" "$viriat"; do
  if ! cli_as "$siren" registry get services >/dev/null 2>&1; then
    sed "s/^{/{\"owner\": \"$epci\",/" tools/registries/services.json >"$run/services-replica.json"
    cli_as "$siren" registry create services "$run/services-replica.json" >/dev/null
  fi
done
# record_count of a registry on a node (absent from the JSON when 0).
count_of() {
  cli_as "$1" --output=json registry get "$2" | sed -n 's/.*"record_count":"\{0,1\}\([0-9]*\).*/\1/p'
}
want=$(count_of "$epci" services)
for siren in "$bourg" "$viriat"; do
  for _ in $(seq 300); do
    have=$(count_of "$siren" services)
    [[ ${have:-0} == "$want" ]] && break
    sleep 0.1
  done
  echo "   ${names[$siren]} holds ${have:-0} of $want services"
done

echo
echo "== the hub"
cli info
echo
echo "== which public offices serve a resident of Bourg-en-Bresse (INSEE 01053)?"
cli list services --where commune=01053
echo
echo "== the member communes of the agglomeration (EPCI $epci), first 10"
cli list communes --where epci="$epci" --limit 10
echo
echo "== a write on Bourg-en-Bresse's node..."
stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
cli_as "$bourg" put services mairie-01053-01 "{\"site\": \"https://www.bourgenbresse.fr/?maj=$stamp\"}" >/dev/null
for siren in "$epci" "$viriat"; do
  for _ in $(seq 100); do
    if cli_as "$siren" get services mairie-01053-01 2>/dev/null | grep -q "maj=$stamp"; then
      echo "   ...is on ${names[$siren]}'s node"
      break
    fi
    sleep 0.05
  done
done
cli_as "$viriat" get services mairie-01053-01
echo
echo "== ...signed by Bourg-en-Bresse's node: its provenance, read on Viriat's node and"
echo "   checked offline against the federation CA alone"
cli_as "$viriat" provenance services mairie-01053-01 --out "$run/provenance.json" | grep -E "FIELD|^site"
"$cli_bin" verify-provenance "$run/provenance.json" --ca "$run/certs/ca.crt"

cat <<MSG

The federation is running. In another terminal, for example:
  export INTERCO_TLS_DIR=$run/certs/clients/$epci/admin
  $cli_bin --addr=127.0.0.1:${api_port[$epci]} get communes 01053
  $cli_bin --addr=127.0.0.1:${api_port[$epci]} watch services
  $cli_bin --addr=127.0.0.1:${api_port[$epci]} audit services
  $cli_bin --addr=127.0.0.1:${api_port[$epci]} conflicts services   # writes that lost a race
  INTERCO_TLS_DIR=$run/certs/clients/$viriat/admin \\
    $cli_bin --addr=127.0.0.1:${api_port[$viriat]} put services mairie-01451-01 '{"telephone": "04 74 25 11 27"}'
MSG
if [[ ${INTERCO_DETACH:-0} == 1 ]]; then
  echo "Nodes running (pids in $run/*.pid; state in $run)."
  exit 0
fi
echo "Ctrl-C stops it (state is kept in $run)."
wait
