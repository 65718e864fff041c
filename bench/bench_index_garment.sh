#!/bin/bash
# Real `lookalike index` wall time, embedding alone vs detection + garment isolation, interleaved.
#
#     bash bench/bench_index_garment.sh ../shared/data/fashion [rounds]
#
# Catalogue: the 600 worn photos of the fashion pairs (one item each), so every photo goes through
# YOLOX + PAN (product shots mostly would not). Each run indexes into a fresh folder, models loaded,
# so the times are what a user waits for. Prints each run and the medians.
set -euo pipefail
data=$(realpath "$1")
rounds=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$root/.venv/bin/python" - "$data" "$work/catalogue.jsonl" <<'PY'
import csv, json, sys
from pathlib import Path

data, out = Path(sys.argv[1]), Path(sys.argv[2])
rows = csv.DictReader((data / "pairs.csv").open(newline=""))
out.write_text("".join(
    json.dumps({"id": r["garment_id"], "images": [str(data / r["worn_image"])]}) + "\n" for r in rows
))
PY
for round in $(seq "$rounds"); do
  for mode in plain garment; do
    if [ "$mode" = plain ]; then flags=(--no-detect); else flags=(--detect --isolate garment --labels person); fi
    start=$(date +%s.%N)
    "$root/.venv/bin/lookalike" index "$work/catalogue.jsonl" --index "$work/idx_${mode}_$round" "${flags[@]}" > "$work/log" 2>&1
    echo "$round $mode $(echo "$(date +%s.%N) - $start" | bc)" | tee -a "$work/times"
  done
done
for mode in plain garment; do
  printf '%s median %s s\n' "$mode" "$(awk -v m="$mode" '$2 == m {print $3}' "$work/times" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
done
