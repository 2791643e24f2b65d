#!/usr/bin/env bash
# The reader from the base model on a lent GPU, in one call (docs/gpu/README.md): gold paragraphs
# (the shipped stage 4's settings, cut to STAGE1 minutes), then the top 5 retrieved passages of
# fit-rerank's corpora with the shared loss (--retrieved-from, STAGE2 minutes, E2 epochs). Both
# budgets end their learning-rate schedule in time. The weights come back under $OUT in parts
# of 15 MB with their cards and logs.
# usage: bash docs/gpu/train.sh STAGE1_MINUTES STAGE2_MINUTES [E2]   (env: LR2, QB2, EXTRA)
set -euo pipefail
KIT=.gpu-kit
OUT=${OUT:-artifacts/gpu-out}
M1=${1:?stage 1 minutes}
M2=${2:?stage 2 minutes}
E2=${3:-3}
mkdir -p "$OUT"
if compgen -G "$KIT/wheels/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$KIT"/wheels/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
common=(--base-model "$KIT/model16" --data "$KIT/squad-train" --no-onnx ${EXTRA:-})
python3 -m qa.reading.train "${common[@]}" --epochs 3 --lr 1e-4 --batch-size 32 --minutes "$M1" --eval-every 1500 \
    --out /tmp/stage1-run --export /tmp/stage1 2>&1 | tee "$OUT/stage1.log"
python3 -m qa.reading.train "${common[@]}" --init /tmp/stage1 --retrieved-from "$KIT/retrieved-5.json.gz" \
    --epochs "$E2" --lr "${LR2:-3e-5}" --question-batch "${QB2:-16}" --minutes "$M2" --eval-every 1000 \
    --out /tmp/stage2-run --export /tmp/stage2 2>&1 | tee "$OUT/stage2.log"
cp /tmp/stage1/reader.json "$OUT/stage1-reader.json"
cp /tmp/stage2/reader.json "$OUT/reader.json"
split -b 15M /tmp/stage2/reader.safetensors "$OUT/reader.safetensors.part-"
ls -l "$OUT"
