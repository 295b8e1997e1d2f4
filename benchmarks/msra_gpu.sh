#!/usr/bin/env bash
# MSRA training runs for choosing the default model, side by side on one GPU (each run its own process).
#
#   benchmarks/msra_gpu.sh launch RUNS MINUTES   start every run in the background (time budget MINUTES each)
#   benchmarks/msra_gpu.sh status RUNS           the last logged epoch of each run
#   benchmarks/msra_gpu.sh wait RUNS SECONDS     status every minute until all runs ended or SECONDS passed
#   benchmarks/msra_gpu.sh collect RUNS NOTE     result files (benchmarks/collect.py) into benchmarks/results
#   benchmarks/msra_gpu.sh default RUNS          train the bundled default model (in the foreground) and export
#                                                it into lexner/default_model
#
# Needs LEXNER_DATA (msra/ and embeddings/) and a CUDA GPU.  The settings of every run are the command lines
# below; each run's own command is also recorded in its model card and result file.
set -euo pipefail
cmd=$1 runs=$2
common=(--dataset msra --device cuda --patience 10 --no-progress --threads 2 --bigram-min-count 3)

launch() {  # NAME ARGS...: one training run in its own process session, logging to RUNS/NAME.log
  local name=$1; shift
  mkdir -p "$runs"
  setsid nohup python -m lexner train "${common[@]}" --epochs 100 --max-minutes "$minutes" --out "$runs/$name" "$@" \
    > "$runs/$name.log" 2>&1 < /dev/null &
}

status() {
  for log in "$runs"/*/log.jsonl; do
    [ -f "$log" ] || continue
    python - "$log" <<'EOF'
import json, sys
lines = [r for r in (json.loads(l) for l in open(sys.argv[1], encoding="utf-8")) if "final" not in r]
last = lines[-1]
best = max(lines, key=lambda l: l.get("dev", {}).get("f1", 0))
print(f"{sys.argv[1].split('/')[-2]:22s} epoch {last['epoch']:3d}  dev {last['dev']['f1']:.4f}  "
      f"best {best['dev']['f1']:.4f} (epoch {best['epoch']})  {last.get('seconds', 0):.0f} s/epoch")
EOF
  done
  for run in "$runs"/*/; do
    [ -f "$run/results.json" ] && echo "finished: $run"
  done
  return 0
}

case $cmd in
  launch)
    minutes=$3
    launch softlexicon_b10 --model softlexicon --batch-size 10 --lr 0.02 --seed 1
    launch softlexicon_b32 --model softlexicon --batch-size 32 --lr 0.04 --seed 1
    launch bilstm_crf_b10 --model bilstm_crf --batch-size 10 --lr 0.02 --seed 1
    launch lattice_lstm_b10 --model lattice_lstm --batch-size 10 --lr 0.02 --seed 1
    launch flat_b10 --model flat --batch-size 10 --lr 0.02 --warmup 0.1 --seed 1
    ;;
  status) status ;;
  wait)
    end=$((SECONDS + $3))
    while [ $SECONDS -lt $end ] && pgrep -f "lexner train" > /dev/null; do
      sleep 60; echo "--- $(date +%T)"; status
    done
    status
    ;;
  collect)
    for run in "$runs"/*/; do
      name=$(basename "$run")
      [ -f "$run/results.json" ] || { echo "not finished: $run"; continue; }
      python benchmarks/collect.py "$run" --name "msra_gpu_$name" --note "$3"
    done
    ;;
  default)  # the shipped run stopped after epoch 8 on --max-minutes; the lr schedule ignores --epochs
    python -m lexner train "${common[@]}" --epochs 8 --out "$runs/softlexicon_default" \
      --model softlexicon --batch-size 32 --lr 0.04 --seed 1
    python -m lexner export "$runs/softlexicon_default/model" lexner/default_model --force --half \
      --rename NR=PER --rename NS=LOC --rename NT=ORG
    ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
