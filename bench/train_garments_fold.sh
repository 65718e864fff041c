#!/bin/bash
# Garments through the product, one fold split by garment (issue 16's protocol):
#
#     bash bench/train_garments_fold.sh ../shared/data/fashion OUT [fold] [tune --train flags...]
#     EMBEDDER=efficientnet-lite2+lite1 bash bench/train_garments_fold.sh ...   # the ensemble
#
# Catalogue: all 600 product shots. Fold 0 trains on the pairs of the first 300 garments of
# pairs.csv and queries with the other 300 garments' worn photos; fold 1 swaps the halves. Runs
# the commands a user runs, each timed with /usr/bin/time -v (wall time, peak memory):
#   index --detect --isolate garment --labels person -> eval (base)
#   tune --pairs (projection) -> eval
#   tune --train --pairs (network trained, projection on top when it helps) -> eval
#   the same index with its projection off (LOOKALIKE_TUNED=false: the trained network alone) -> eval
# OUT keeps the catalogue, the CSVs, the index and every command's JSON answer and time log.
set -euo pipefail
data=$(realpath "$1")
out=$(realpath -m "$2")
fold=${3:-0}
shift $(( $# < 3 ? $# : 3 ))
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.venv/bin"
mkdir -p "$out"
"$bin/python" - "$data" "$out" "$fold" <<'PY'
import csv, json, sys
from pathlib import Path

data, out, fold = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
rows = list(csv.DictReader((data / "pairs.csv").open(newline="")))
half = len(rows) // 2
train, held = (rows[:half], rows[half:]) if fold == 0 else (rows[half:], rows[:half])
(out / "catalogue.jsonl").write_text("".join(
    json.dumps({"id": r["garment_id"], "images": [str(data / r["product_image"])]}) + "\n"
    for r in rows
))
for name, part in (("pairs_train.csv", train), ("held_out.csv", held)):
    with (out / name).open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "item_id"])
        writer.writerows([str(data / r["worn_image"]), r["garment_id"]] for r in part)
PY
idx="$out/index"
catalogue="$out/catalogue.jsonl"
queries="$out/held_out.csv"
source "$root/bench/train_steps.sh"
rm -rf "$idx"
step index "$bin/lookalike" index "$out/catalogue.jsonl" --index "$idx" \
  --detect --isolate garment --labels person ${EMBEDDER:+--embedder "$EMBEDDER"}
evaluate base
step tune_projection "$bin/lookalike" tune --index "$idx" --pairs "$out/pairs_train.csv"
evaluate projection
step tune_train "$bin/lookalike" tune --index "$idx" --train --pairs "$out/pairs_train.csv" "$@"
evaluate train
evaluate_trained
