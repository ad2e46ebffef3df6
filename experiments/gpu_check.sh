#!/usr/bin/env bash
# The one prepared device check of the "cuda" backend (issue 4), for a session that is lent
# a GPU machine (the device tool's nvidia-h200: CuPy for CUDA 13, numba + numba-cuda, PyTorch
# and pytest are already in its python3; nothing can be downloaded there).
#
# From the repository root, through the device tool, one call:
#     run(command="bash experiments/gpu_check.sh", timeout_s=600)
# (add carry=[".whl"] and the wheels if a package is missing there: see
# /work/.library/device/README.md). It installs this project without dependencies into
# /tmp/site, runs the cuda tests on the real GPU (tests/test_cuda_*.py, the `gpu`-marked ones
# at realistic sizes included) from a scratch directory so that the installed package is the
# one imported, then the benchmark. Everything lands in $OUT (at most 8 files come back):
#     env.txt  pytest.log  bench.log  gpu_bench.json  gpu_bench_ws1024.json
# Budget: about 1-2 min to start the machine, ~1 min install and kernel compilation, ~2 min
# tests, ~3 min benchmarks; each step has its own timeout so the files always come back.
set -uo pipefail
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

# Carried wheels (if any) first, then this project itself, without touching the image's packages.
SITE="${SITE:-/tmp/site}"
mkdir -p "$SITE"
if ls "$REPO"/.whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$REPO"/.whl/*.whl >>"$OUT/env.txt" 2>&1 || echo "carried wheels failed to install" >>"$OUT/env.txt"
fi
"$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir \
  --target "$SITE" "$REPO" >>"$OUT/env.txt" 2>&1 || { echo "installing minicnn failed" | tee -a "$OUT/env.txt"; exit 1; }
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"

# A scratch directory, so that `import minicnn` finds the installed package (which has
# minicnn.kernels), not the source folder.
RUN="${RUN_DIR:-/tmp/minicnn-run}"
rm -rf "$RUN" && mkdir -p "$RUN" && cp -r "$REPO/tests" "$REPO/experiments" "$REPO/pyproject.toml" "$RUN/"
cd "$RUN"
"$PY" - >>"$OUT/env.txt" 2>&1 <<'EOF'
import minicnn as mc
b = mc.set_backend("cuda")
print("minicnn from", mc.__file__, "| cuda backend simulated:", b.simulated)
from numba import cuda
print("numba.cuda implementation:", getattr(cuda, "implementation", "?"))
cuda.detect()
EOF

timeout 200 "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_cuda_*.py 2>&1 | tee "$OUT/pytest.log"
echo "pytest exit: ${PIPESTATUS[0]}" | tee -a "$OUT/pytest.log"

timeout 240 "$PY" "$REPO/experiments/gpu_bench.py" --out "$OUT/gpu_bench.json" 2>&1 | tee "$OUT/bench.log"
echo "bench exit: ${PIPESTATUS[0]}" | tee -a "$OUT/bench.log"

# One variant: a 1 GiB im2col workspace (fewer, larger GEMMs per conv layer), ours only.
timeout 90 "$PY" "$REPO/experiments/gpu_bench.py" --no-torch --batches 256 --workspace-mb 1024 \
  --out "$OUT/gpu_bench_ws1024.json" 2>&1 | tee -a "$OUT/bench.log"
echo "bench (1 GiB workspace) exit: ${PIPESTATUS[0]}" | tee -a "$OUT/bench.log"
