#!/usr/bin/env bash
# The checks a lent GPU is for (#15), as one command that fits one short lease.
#
#   benchmarks/gpu_checks.sh prepare        here, with LEXNER_DATA set and pip able to download: writes .gpu/
#                                           (git-ignored): MSRA and its vectors cut to size (gpu_bundle.py) and
#                                           wheels of the dependencies the device's Python lacks
#   benchmarks/gpu_checks.sh run [SECONDS]  there (device tool, carry .gpu, its run under SECONDS, default 560):
#                                           tests/test_cuda.py, one full MSRA epoch of each tagger, a CUDA profile
#                                           of softlexicon's training step; every file lands in $OUT as its step ends
#
# Each step's timeout is its own cap or what is left of SECONDS (the caps add up to 540 s), so the run ends
# inside the lease.  What travels is the working tree plus .gpu (about 29 MB): at stop 46 that was 66.3 of the
# 67.1 MB (64 MiB) a call may carry, so a bigger bundled model or data bundle needs the bundle cut further.
set -u
cmd=${1:-}
case $cmd in
prepare)
  set -e
  python benchmarks/gpu_bundle.py .gpu/data
  python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpu/whl pyahocorasick pytorch-crf opencc
  python -m pip wheel -q --no-deps -w .gpu/whl seqeval  # a source distribution: built here, pure Python
  du -sh .gpu
  ;;
run)
  budget=${2:-560} start=$SECONDS
  cap() { local left=$((budget - (SECONDS - start))); [ "$1" -lt "$left" ] && echo "$1" || echo "$left"; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .gpu/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 LEXNER_DATA=/tmp/data
  mkdir -p /tmp/data/msra /tmp/data/embeddings
  for f in msra/train.char.bmes msra/test.char.bmes embeddings/char.50d.vec; do
    python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
      ".gpu/data/$f.xz" "/tmp/data/$f"
  done
  cp .gpu/data/embeddings/bigram.50d.vec.xz .gpu/data/embeddings/word.50d.vec.xz /tmp/data/embeddings/
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc
    python3 -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"; } \
    > "$OUT/machine.txt" 2>&1
  timeout -k 10 "$(cap 120)" python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py > "$OUT/cuda_tests.log" 2>&1
  echo "tests: rc $? at $((SECONDS - start)) s"; tail -3 "$OUT/cuda_tests.log"
  for spec in softlexicon:80 bilstm_crf:60 lattice_lstm:120 flat:100; do  # model:cap in seconds
    model=${spec%%:*} t=$(cap "${spec##*:}"); [ "$t" -gt 20 ] || break
    s0=$SECONDS
    timeout -k 10 "$t" python3 -m lexner train --model "$model" --dataset msra --device cuda --epochs 1 --optimizer adam \
      --lr 2e-3 --batch-size 32 --bigram-min-count 3 --threads 4 --seed 1 --no-progress --out "/tmp/epoch_$model" \
      > "/tmp/epoch_$model.log" 2>&1
    rc=$?
    { echo "== $model: rc $rc, wall $((SECONDS - s0)) s"; grep -E "entries|epoch 1|sentences" "/tmp/epoch_$model.log"
      cat "/tmp/epoch_$model/log.jsonl" 2>/dev/null; } >> "$OUT/epochs.txt"
    tail -2 "/tmp/epoch_$model.log"
  done
  t=$(cap 60)
  [ "$t" -gt 20 ] && timeout -k 10 "$t" python3 benchmarks/profile_train.py --device cuda --models softlexicon \
    --steps 20 --sentences 3000 --threads 4 --out "$OUT/profile_train_msra_cuda.json" > "$OUT/profile.log" 2>&1
  echo "done at $((SECONDS - start)) s"
  ;;
*) echo "usage: $0 prepare | run [SECONDS]" >&2; exit 2 ;;
esac
