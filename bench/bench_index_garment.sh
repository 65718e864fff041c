#!/bin/bash
# real `lookalike index` wall time: 600 worn photos, embedding alone vs detect + garment isolation, interleaved
cd /work/main
export LOOKALIKE_MODELS_MIRROR=/work/shared/models LOOKALIKE_CACHE_DIR=/work/main/.cache/lookalike
for round in 1 2 3; do
  for mode in plain garment; do
    rm -rf /tmp/isp_$mode
    if [ $mode = plain ]; then flags="--no-detect"; else flags="--detect --isolate garment --labels person"; fi
    s=$(date +%s.%N)
    .venv/bin/lookalike index /work/cache/s3/worn_catalogue.jsonl --index /tmp/isp_$mode $flags > /dev/null 2>&1
    e=$(date +%s.%N)
    echo "$round $mode $(echo "$e - $s" | bc)"
  done
done
