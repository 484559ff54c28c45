#!/usr/bin/env bash
# The prepared GPU check (issue 6): one command of at most 8 minutes on a lent GPU machine.
#
#   bash experiments/gpu_prepare.sh                # here, once: fills .gpu_carry/
#   bash experiments/gpu_check.sh                  # there, with carry=[".gpu_carry"]
#   bash experiments/gpu_check.sh --dry-run        # here, on the CPU: tiny sizes, ~2 minutes
#
# Steps, each under `timeout` and logged to its own file:
#   env       nvidia-smi, python, jax devices
#   install   the carried wheels (.gpu_carry/wheels: tensorflow-datasets, ml-collections,
#             tensorboardX and what they need) into a --target folder put on PYTHONPATH, then
#             an import check; the dry run only checks the wheels install for python 3.12
#   data      untar the carried CIFAR-10 JPEGs into .gpu_carry/cifar10 and convert them to
#             TFDS array_record (the dry run makes 10 classes of random 8x8 PNGs and a fake
#             NB201 table instead)
#   tests     a subset of the test suite on the GPU: the numerics that differ by backend
#             (convolutions, ops, supernet, search steps, scoring vmap == loop, optimizers,
#             augmentation); GPU_CHECK_TESTS overrides it
#   bench     python -m nas_jax.bench at the issue's sizes, cut by its --total-budget
#   pipeline  NB201 search + PT selection (no tuning, 50 scoring and validation batches) +
#             NB201 lookup on the CIFAR-10 copy, for as many search epochs as fit in the time
#             left (from the benchmark's NB201 'search' step; GPU_CHECK_EPOCHS overrides)
# Results go to experiments/results/<card>_<UTC date>/ (GPU_CHECK_RESULTS overrides): the
# logs, summary.txt, bench.txt/json, pipeline/result.json; with $OUT set (the device tool)
# a tarball of it and the main files are copied there too. Exit status 0 when every step
# passed. Environment: PYTHON (python3), GPU_CHECK_BUDGET (seconds, 470), GPU_CHECK_T_TESTS
# (100), GPU_CHECK_T_BENCH (150), GPU_CHECK_CARRY (.gpu_carry), GPU_CHECK_WORK (scratch:
# a new temporary folder), GPU_CHECK_EPOCHS, GPU_CHECK_TESTS, GPU_CHECK_DRY_RUN=1.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DRY=${GPU_CHECK_DRY_RUN:-0}
for arg in "$@"; do
  case $arg in
    --dry-run) DRY=1 ;;
    -h | --help) sed -n '2,/^set -uo/{/^#/p}' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (accepted: --dry-run)" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-python3}
CARRY=${GPU_CHECK_CARRY:-.gpu_carry}
BUDGET=${GPU_CHECK_BUDGET:-470}
T_TESTS=${GPU_CHECK_T_TESTS:-100}
T_BENCH=${GPU_CHECK_T_BENCH:-150}
WORK=${GPU_CHECK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/nas_jax_gpu_check.XXXXXX")}
START=$SECONDS
left() { echo $((BUDGET - (SECONDS - START))); }

if [[ $DRY == 1 ]]; then
  CARD=cpu-dry-run
else
  CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  CARD=$(echo "${CARD:-unknown-card}" | tr -c 'A-Za-z0-9.\n-' '_')
fi
RES=${GPU_CHECK_RESULTS:-experiments/results/${CARD}_$(date -u +%Y-%m-%d_%H%M)}
mkdir -p "$RES" && RES=$(cd "$RES" && pwd)
mkdir -p "$WORK"
SUMMARY=$RES/summary.txt
: >"$SUMMARY"
FAILED=0
echo "gpu_check: card=$CARD dry_run=$DRY results=$RES budget=${BUDGET}s"

# step NAME SECONDS CMD...: runs CMD under timeout, output to $RES/NAME.log, one summary line.
step() {
  local name=$1 limit=$2 t0=$SECONDS rc status
  shift 2
  if ((limit < 5)); then
    status=skipped rc=0
    echo "(no time left)" >"$RES/$name.log"
  else
    timeout -k 10 "$limit" "$@" >"$RES/$name.log" 2>&1
    rc=$?
    case $rc in 0) status=ok ;; 124 | 137) status=timeout ;; *) status="failed($rc)" ;; esac
  fi
  [[ $status == ok || $status == skipped ]] || FAILED=1
  tail -n 4 "$RES/$name.log" | sed "s/^/  [$name] /"
  printf '%-9s %-11s %4ds (limit %ds)\n' "$name" "$status" $((SECONDS - t0)) "$limit" |
    tee -a "$SUMMARY"
  [[ $status == ok ]]
}

ENV_INFO='date -u; uname -a; nvidia-smi || echo "no nvidia-smi"; "$0" -V
"$0" -m pip list 2>/dev/null | grep -i -E "^(jax|jaxlib|flax|optax|orbax-checkpoint|numpy|protobuf|etils) "'
step env 30 bash -c "$ENV_INFO" "$PYTHON"

# --- install -------------------------------------------------------------------------
SITE=$WORK/site
PLATFORM=(--only-binary=:all: --python-version 3.12 --implementation cp
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
shopt -s nullglob
WHEELS=("$CARRY"/wheels/*.whl)
if [[ $DRY == 1 ]]; then
  if ((${#WHEELS[@]})); then  # proves the carried set installs for the GPU's python 3.12
    step install 60 "$PYTHON" -m pip install --dry-run --no-index --no-deps --ignore-installed \
      --target "$SITE" "${PLATFORM[@]}" "${WHEELS[@]}"
  else
    echo "install   skipped     (dry run: no $CARRY/wheels; the installed packages are used)" |
      tee -a "$SUMMARY"
  fi
  export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
else
  if ! ((${#WHEELS[@]})); then
    echo "no wheels in $CARRY/wheels: run experiments/gpu_prepare.sh and carry $CARRY" >&2
    exit 1
  fi
  step install 90 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target "$SITE" "${WHEELS[@]}"
  export PYTHONPATH=$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 NAS_JAX_TEST_XLA_CACHE=$WORK/xla_tests
IMPORTS='import jax, flax, optax, orbax.checkpoint, ml_collections, tensorboardX
import tensorflow_datasets as tfds
print("jax", jax.__version__, "tfds", tfds.__version__, "backend", jax.default_backend())
print(jax.devices())'
if ! step imports 60 "$PYTHON" -c "$IMPORTS"; then
  echo "gpu_check: the packages do not import; see $RES/imports.log" | tee -a "$SUMMARY"
  exit 1
fi
if [[ $DRY != 1 ]] && ! grep -q "backend gpu" "$RES/imports.log"; then
  echo "warning: jax does not see a GPU; the numbers below are not GPU numbers" |
    tee -a "$SUMMARY"
fi

# --- data ----------------------------------------------------------------------------
DATA_DIR=$WORK/tfds
if [[ $DRY == 1 ]]; then
  FOLDER=$WORK/fixtures/images TABLE=$WORK/fixtures/nb201_fake.csv
  PREP=("$PYTHON" experiments/gpu_check_fixtures.py "$WORK/fixtures")
  step fixtures 60 "${PREP[@]}"
else
  FOLDER=$CARRY/cifar10 TABLE=$CARRY/nb201_test_accuracy.csv
  if [[ ! -d $FOLDER/train ]]; then
    mkdir -p "$FOLDER" && step untar 60 tar -xzf "$CARRY/cifar10-jpeg-q75.tar.gz" -C "$FOLDER"
  fi
fi
CONVERT="from nas_jax import data
for split in ('train', 'test'):
    ds = data.load_dataset('image_folder', split, data_dir='$DATA_DIR', folder='$FOLDER')
    print(split, ds.images.shape, ds.num_classes)"
step data 120 "$PYTHON" -c "$CONVERT"

# --- tests ---------------------------------------------------------------------------
if [[ $DRY == 1 ]]; then
  TESTS=${GPU_CHECK_TESTS:-tests/test_spaces.py}
else
  TESTS=${GPU_CHECK_TESTS:-tests/test_conv.py tests/test_ops.py tests/test_supernet.py \
tests/test_search_methods.py tests/test_selection.py tests/test_optim.py tests/test_data_augment.py}
fi
# shellcheck disable=SC2086  # TESTS is a list of paths
step tests "$T_TESTS" "$PYTHON" -m pytest -q -p no:cacheprovider --durations=10 $TESTS

# --- benchmark -----------------------------------------------------------------------
if [[ $DRY == 1 ]]; then
  BENCH=(--quick --cases fwd_masked --spaces nb201 --repeats 2)
else
  BENCH=(--cases search,weight,alpha1,score_batched,score_seq,fwd_masked,tune,sdarts_rs,alpha2,alpha2_fd,sdarts_adv,retrain
    --case-timeout 120 --total-budget $((T_BENCH - 15)))
fi
step bench "$T_BENCH" "$PYTHON" -m nas_jax.bench "${BENCH[@]}" --json "$RES/bench.json"
cp "$RES/bench.log" "$RES/bench.txt" 2>/dev/null

# --- NB201 search + PT + lookup ------------------------------------------------------
T_PIPE=$(($(left) - 20))
# Epochs that fit: 391 steps of the benchmark's NB201 'search' step per epoch, plus 15% for
# the per-epoch validation on 50 batches, after ~120 s of compiles, data loading, selection
# and lookup (3 epochs when the benchmark has no such row).
FIT=$("$PYTHON" - "$RES/bench.json" "$T_PIPE" <<'EOF'
import json, sys
try:
    rows = json.load(open(sys.argv[1]))["rows"]
    ms = next(r["ms"] for r in rows if (r["case"], r["space"]) == ("search", "nb201") and r["ms"])
    print(max(1, min(100, int((float(sys.argv[2]) - 120) / (391 * ms / 1e3 * 1.15)))))
except Exception:
    print(3)
EOF
)
if [[ $DRY == 1 ]]; then  # the smoke config: 2 epochs of 2 steps
  SMOKE=,smoke EXTRA=() EPOCHS=2
else
  EPOCHS=${GPU_CHECK_EPOCHS:-$FIT}
  SMOKE="" EXTRA=(--config.search.epochs="$EPOCHS" --config.data.eval_batches=50
    --config.select.tune_epochs=0 --config.select.eval_batches=50)
fi
echo "pipeline: $EPOCHS search epochs in at most ${T_PIPE}s" | tee -a "$SUMMARY"
PIPE_DIR=$WORK/nb201
step pipeline "$T_PIPE" "$PYTHON" -m nas_jax.main \
  --config "configs/nb201.py:dataset=image_folder$SMOKE" --workdir "$PIPE_DIR" \
  --config.data.folder="$FOLDER" --config.data.data_dir="$DATA_DIR" \
  --config.stages="('search','select','evaluate')" --config.evaluate.nb201_table="$TABLE" \
  --config.xla_cache_dir="$WORK/xla" "${EXTRA[@]}"
mkdir -p "$RES/pipeline"
for f in result.json genotype.json genotype_magnitude.json decisions.jsonl metrics.jsonl \
  config.json; do
  [[ -f $PIPE_DIR/$f ]] && cp "$PIPE_DIR/$f" "$RES/pipeline/"
done
if [[ -f $RES/pipeline/result.json ]]; then
  "$PYTHON" -c "import json,sys; r=json.load(open(sys.argv[1]))
print('lookup:', r['genotype_text'], 'test accuracy', r['test_accuracy'])" \
    "$RES/pipeline/result.json" | tee -a "$SUMMARY"
fi

# --- results -------------------------------------------------------------------------
echo "total $((SECONDS - START))s of ${BUDGET}s; failed steps: $FAILED" | tee -a "$SUMMARY"
sed -n '/^nas_jax.bench on/,$p' "$RES/bench.txt" 2>/dev/null
if [[ -n ${OUT:-} && -d ${OUT:-} ]]; then
  tar -czf "$OUT/results.tar.gz" -C "$(dirname "$RES")" "$(basename "$RES")"
  for f in summary.txt bench.txt bench.json tests.log pipeline.log pipeline/result.json; do
    [[ -f $RES/$f ]] && cp "$RES/$f" "$OUT/"
  done
fi
exit "$FAILED"
