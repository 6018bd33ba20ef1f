#!/usr/bin/env bash
# The main job (the README's first command): installs what is missing, builds, creates dev
# certificates, starts an interco node for a real authority — the Communauté
# d'agglomération du Bassin de Bourg-en-Bresse (SIREN 200071751) — loads real open data
# into its registries, shows a territorial query, and keeps the node running until Ctrl-C.
#
#   INTERCO_RUN_DIR   state directory (default: .run/ in the repository)
#   INTERCO_PORT      API port (default 7443); the health port is INTERCO_PORT+1
#   INTERCO_DETACH=1  return once loaded, leaving the node running (pid in $RUN/node.pid)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
run=${INTERCO_RUN_DIR:-"$root/.run"}
port=${INTERCO_PORT:-7443}
health_port=$((port + 1))
federation=interco.local
siren=200071751  # CA du Bassin de Bourg-en-Bresse
data=tools/data/fr

bash tools/deps.sh
echo "== building"
bash tools/build.sh "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -- interco_noded interco_cli
node_bin=build/node/interco-node
cli_bin=build/node/cli/interco

echo "== dev certificates (federation $federation) in $run/certs"
mkdir -p "$run"
bash certs/dev-certs.sh "$run/certs" "$federation" "$siren" >/dev/null

if [[ -f $run/node.pid ]] && kill -0 "$(cat "$run/node.pid")" 2>/dev/null; then
  echo "== stopping the node left running by a previous quick start"
  kill "$(cat "$run/node.pid")" && sleep 1
fi

echo "== starting the node of $siren on 127.0.0.1:$port (health on $health_port)"
"$node_bin" --authority="$siren" \
  --display_name="CA du Bassin de Bourg-en-Bresse" --federation="$federation" \
  --data_dir="$run/$siren" --tls_dir="$run/certs/nodes/$siren" \
  --listen="127.0.0.1:$port" --health_listen="127.0.0.1:$health_port" \
  2>>"$run/$siren.log" &
node_pid=$!
echo "$node_pid" >"$run/node.pid"
stop() {
  kill -TERM "$node_pid" 2>/dev/null || true
  wait "$node_pid" 2>/dev/null || true
  rm -f "$run/node.pid"
}
if [[ ${INTERCO_DETACH:-0} != 1 ]]; then trap stop EXIT INT TERM; fi

export INTERCO_TLS_DIR="$run/certs/clients/$siren/admin"
cli() { "$cli_bin" --addr="127.0.0.1:$port" "$@"; }
for _ in $(seq 100); do
  if cli info >/dev/null 2>&1; then break; fi
  if ! kill -0 "$node_pid" 2>/dev/null; then
    echo "the node exited; its log:" >&2
    tail -20 "$run/$siren.log" >&2
    exit 1
  fi
  sleep 0.1
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
echo "== the node"
cli info
echo
echo "== which public offices serve a resident of Bourg-en-Bresse (INSEE 01053)?"
cli list services --where commune=01053
echo
echo "== the member communes of the agglomeration (EPCI $siren), first 10"
cli list communes --where epci="$siren" --limit 10

cat <<MSG

The node is running. In another terminal, for example:
  export INTERCO_TLS_DIR=$run/certs/clients/$siren/admin
  $cli_bin --addr=127.0.0.1:$port get communes 01053
  $cli_bin --addr=127.0.0.1:$port put services mairie-01053-01 '{"telephone": "04 74 45 71 99"}'
  $cli_bin --addr=127.0.0.1:$port watch services
MSG
if [[ ${INTERCO_DETACH:-0} == 1 ]]; then
  echo "Node pid $node_pid (state in $run)."
  exit 0
fi
echo "Ctrl-C stops it (state is kept in $run)."
wait "$node_pid"
