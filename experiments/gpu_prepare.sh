#!/usr/bin/env bash
# Fills .gpu_carry/ (git-ignored) with what experiments/gpu_check.sh needs on a lent GPU
# machine that has no network: wheels of the packages its image lacks, the CIFAR-10 JPEG
# archive and the NAS-Bench-201 accuracy table. Run it here, once, from any folder:
#
#   bash experiments/gpu_prepare.sh          # then run gpu_check.sh with carry=[".gpu_carry"]
#
# The GPU image (/work/.library/device/KINDS.md) has python 3.12, jax, flax, optax, orbax,
# absl-py, numpy, protobuf, etils, psutil, pyarrow, requests, tqdm, wrapt, pyyaml, pillow,
# scikit-learn, chex and pytest, but no tensorflow-datasets, ml-collections or tensorboardX.
# The wheels below are those three and what they need beyond the image, pinned to the
# versions this project's CPU environment runs; protobuf and etils come along too, so the
# set is the tested one whatever versions the image holds (they shadow the image's only
# inside gpu_check.sh's PYTHONPATH). About 32 MiB in all, under the 64 MiB a call carries.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
SHARED=${SHARED:-../shared/data}
CARRY=.gpu_carry
WHEELS=(
  tensorflow-datasets==4.9.10 ml-collections==1.1.0 tensorboardX==2.6.5
  array_record==0.8.6 dm-tree==0.1.10 etils==1.15.0 importlib_resources==7.1.0
  immutabledict==4.3.1 simple-parsing==0.1.9 docstring_parser==0.18.0
  tensorflow-metadata==1.21.0 googleapis-common-protos==1.76.0 protobuf==7.36.2
  termcolor==3.3.0 toml==0.10.2
)
PLATFORM=(--only-binary=:all: --python-version 3.12 --implementation cp
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

mkdir -p "$CARRY/wheels"
rm -f "$CARRY"/wheels/*.whl
"$PYTHON" -m pip download -q --no-deps "${PLATFORM[@]}" -d "$CARRY/wheels" "${WHEELS[@]}"
# promise (a tensorflow-datasets requirement) is published as a source archive only; its
# wheel is pure Python, so one built here installs anywhere.
"$PYTHON" -m pip wheel -q --no-deps -w "$CARRY/wheels" promise==2.3

for f in cifar10-jpeg-q75.tar.gz nb201_test_accuracy.csv; do
  if [[ ! -f "$SHARED/$f" ]]; then
    echo "missing $SHARED/$f (set SHARED=folder)" >&2
    exit 1
  fi
  rm -f "$CARRY/$f" && cp -p "$SHARED/$f" "$CARRY/$f"
done
grep -qx "/$CARRY/" .gitignore 2>/dev/null || echo "warning: $CARRY is not in .gitignore" >&2
ls -l "$CARRY" "$CARRY/wheels"
du -sh "$CARRY"
