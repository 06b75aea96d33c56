#!/bin/bash
# Runs every row of a table (name<TAB>json; fashion_mnist_search.tsv by default) at once, each in its own process
# (one GPU holds them all), then prints the RESULT lines, best final accuracy first.
#   bash benches/peers/fashion_mnist_search.sh [ROWS.tsv] > results.txt
set -u
here="$(cd "$(dirname "$0")" && pwd)"
logs="$(mktemp -d)"
while IFS=$'\t' read -r name cfg; do
  [ -z "$name" ] && continue
  PYTHONUNBUFFERED=1 python3 "$here/fashion_mnist_search.py" "$cfg" "$name" > "$logs/$name.log" 2>&1 &
done < "${1:-$here/fashion_mnist_search.tsv}"
wait
grep -h RESULT "$logs"/*.log | sort -t' ' -k4 -n -r
for f in "$logs"/*.log; do grep -q RESULT "$f" || { echo "== $f"; tail -3 "$f"; }; done
