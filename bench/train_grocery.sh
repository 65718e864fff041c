#!/bin/bash
# Grocery through the product, the issue's check with the defaults:
#
#     bash bench/train_grocery.sh ../shared/data/grocery OUT [tune --train flags...]
#     EMBEDDER=efficientnet-lite2+lite1 bash bench/train_grocery.sh ...   # the ensemble
#
# Runs the commands a user runs, each timed with /usr/bin/time -v (wall time, peak memory):
#   sample -> index -> eval (base) -> tune (projection) -> eval -> tune --train (network, projection on top when it helps)
#   -> eval; then with the projection off (LOOKALIKE_TUNED=false: the trained network alone) -> eval.
# The queries are the sample's val photos (store photos); the command's own held-out draws come
# from the catalogue. OUT keeps the sample, the index and every command's JSON answer and time log.
set -euo pipefail
data=$(realpath "$1")
out=$(realpath -m "$2")
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.venv/bin"
mkdir -p "$out"
idx="$out/index"
catalogue="$out/sample/catalogue.jsonl"
queries="$out/sample/queries.csv"
source "$root/bench/train_steps.sh"
"$bin/lookalike" sample -o "$out/sample" --data-dir "$data"
rm -rf "$idx"
step index "$bin/lookalike" index "$out/sample/catalogue.jsonl" --index "$idx" \
  ${EMBEDDER:+--embedder "$EMBEDDER"}
evaluate base
step tune_projection "$bin/lookalike" tune --index "$idx"
evaluate projection
step tune_train "$bin/lookalike" tune --index "$idx" --train "$@"
evaluate train
evaluate_trained
