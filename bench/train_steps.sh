# Shared steps of bench/train_grocery.sh and bench/train_garments_fold.sh (sourced, not run).
# Expects: bin (the venv's bin), out (the output folder), idx (the index), catalogue, queries.

step() {  # step NAME COMMAND...: run it timed, its JSON answer in NAME.json
  local name=$1
  shift
  echo "== $name: $*"
  /usr/bin/time -v -o "$out/$name.time" "$@" --json > "$out/$name.json"
  grep -E "Elapsed|Maximum resident" "$out/$name.time"
}

evaluate() {  # evaluate NAME: eval_NAME.json of the queries against the index
  step "eval_$1" "$bin/lookalike" eval --catalogue "$catalogue" --queries "$queries" --index "$idx"
  "$bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1])))' "$out/eval_$1.json"
}

evaluate_trained() {  # after tune --train: the trained network alone, when a projection was kept
  if [ -f "$idx/projection.json" ]; then
    LOOKALIKE_TUNED=false evaluate train_noproj
  fi
}
