#!/usr/bin/env bash
# The one prepared device check of the "cuda" backend (issue 4), for a session that is lent
# a GPU machine (the device tool's nvidia-h200: CuPy for CUDA 13, numba + numba-cuda, PyTorch
# and pytest are already in its python3; nothing can be downloaded there).
#
# Its numpy (2.5.2 on 2026-11-30) is too new for its numba-cuda (0.30.4 types np.row_stack,
# which numpy 2.5 removed), so carry a numpy 2.4 wheel: from the repository root, once,
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 -d .whl numpy==2.4.6
# (.whl/ is ignored by git), then, through the device tool, one call:
#     run(command="bash experiments/gpu_check.sh", carry=[".whl"], timeout_s=600)
# Before the carried wheels go in, it records in env.txt what set_backend("cuda") says with
# the machine's own packages. It installs this project without dependencies into
# /tmp/site, runs the cuda tests on the real GPU (tests/test_cuda_*.py, the `gpu`-marked ones
# at realistic sizes included) from a scratch directory so that the installed package is the
# one imported, then the benchmark. Everything lands in $OUT (at most 8 files come back):
#     env.txt  pytest.log  bench.log  gpu_bench.json  gpu_bench_im2col.json  gpu_bench_ws64.json
#     host_profile.txt (where a training step's host time goes, batch 128)
# Budget: the machine takes 1-2 min to start (outside this script); then each step has a
# cap, cut to what is left of BUDGET (570 s) so that the script ends inside the device
# tool's 600 s per command and the files always come back: setup 60 s each part, tests
# 170 s, benchmark 220 s, each variant and the profile 60 s (skipped when under 30 s are left).
set -uo pipefail
BUDGET="${BUDGET:-570}"
limit() { local left=$((BUDGET - SECONDS)); left=$(( left < 1 ? 1 : left )); echo $(( left < $1 ? left : $1 )); }
REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${OUT:-$REPO/out/gpu_check}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
unset NUMBA_ENABLE_CUDASIM

{
  echo "== $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv || true
  "$PY" --version
  "$PY" -m pip list 2>/dev/null | grep -iE '^(numpy|numba|numba-cuda|cupy|cupy-cuda1[23]x|torch|pytest|scipy|pillow|tqdm|threadpoolctl) ' || true
} >"$OUT/env.txt" 2>&1

# This project first, without touching the image's packages; what the cuda backend says with
# them; then the carried wheels (if any) over them.
SITE="${SITE:-/tmp/site}"
mkdir -p "$SITE"
timeout -k 5 "$(limit 60)" "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
  --no-cache-dir --target "$SITE" "$REPO" >>"$OUT/env.txt" 2>&1 || { echo "installing minicnn failed" | tee -a "$OUT/env.txt"; exit 1; }
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
echo "-- set_backend('cuda') with the machine's own packages:" >>"$OUT/env.txt"
(cd /tmp && timeout -k 5 "$(limit 60)" "$PY" -c 'import numpy, minicnn as mc
print("numpy", numpy.__version__)
try:
    mc.set_backend("cuda"); print("available")
except mc.BackendUnavailable as e:
    print("BackendUnavailable:", e)' >>"$OUT/env.txt" 2>&1)
if ls "$REPO"/.whl/*.whl >/dev/null 2>&1; then
  echo "-- carried wheels: $(cd "$REPO/.whl" && echo *.whl)" >>"$OUT/env.txt"
  timeout -k 5 "$(limit 60)" "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$REPO"/.whl/*.whl >>"$OUT/env.txt" 2>&1 || echo "carried wheels failed to install" >>"$OUT/env.txt"
fi

# A scratch directory, so that `import minicnn` finds the installed package (which has
# minicnn.kernels), not the source folder.
RUN="${RUN_DIR:-/tmp/minicnn-run}"
rm -rf "$RUN" && mkdir -p "$RUN" && cp -r "$REPO/tests" "$REPO/experiments" "$REPO/pyproject.toml" "$RUN/"
cd "$RUN"
timeout -k 5 "$(limit 60)" "$PY" - >>"$OUT/env.txt" 2>&1 <<'EOF'
import minicnn as mc
b = mc.set_backend("cuda")
import numpy
print("minicnn from", mc.__file__, "| numpy", numpy.__version__, "| cuda backend simulated:", b.simulated)
from numba import cuda
print("numba.cuda implementation:", getattr(cuda, "implementation", "?"))
cuda.detect()
EOF

t=$(limit 170)
timeout -k 10 "$t" "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_cuda_*.py 2>&1 | tee "$OUT/pytest.log"
echo "pytest exit: ${PIPESTATUS[0]} (limit ${t}s)" | tee -a "$OUT/pytest.log"

t=$(limit 220)
timeout -k 10 "$t" "$PY" "$REPO/experiments/gpu_bench.py" --out "$OUT/gpu_bench.json" 2>&1 | tee "$OUT/bench.log"
echo "bench exit: ${PIPESTATUS[0]} (limit ${t}s)" | tee -a "$OUT/bench.log"

# Variants, ours only, while time is left: every convolution through im2col (the default
# runs Winograd where it applies), then a 64 MiB workspace (more, smaller chunks than 1 GiB).
for variant in "im2col:--convolutions im2col" "ws64:--workspace-mb 64"; do
  t=$(limit 60)
  if [ "$t" -lt 30 ]; then echo "variant ${variant%%:*} skipped: ${t}s left" | tee -a "$OUT/bench.log"; continue; fi
  # shellcheck disable=SC2086  # the variant's options are meant to split
  timeout -k 10 "$t" "$PY" "$REPO/experiments/gpu_bench.py" --no-torch --batches 256 ${variant#*:} \
    --out "$OUT/gpu_bench_${variant%%:*}.json" 2>&1 | tee -a "$OUT/bench.log"
  echo "bench (${variant%%:*}) exit: ${PIPESTATUS[0]} (limit ${t}s)" | tee -a "$OUT/bench.log"
done

t=$(limit 60)
if [ "$t" -lt 30 ]; then echo "host profile skipped: ${t}s left" | tee -a "$OUT/bench.log"; else
  timeout -k 10 "$t" "$PY" "$REPO/experiments/host_profile.py" --backend cuda --batch 128 \
    --out "$OUT/host_profile.txt" >/dev/null 2>>"$OUT/bench.log"
  echo "host profile exit: $? (limit ${t}s)" | tee -a "$OUT/bench.log"
fi
