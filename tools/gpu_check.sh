#!/usr/bin/env bash
# GPU check of the whole repository on one CUDA machine: the `cuda` tests of all five packages,
# the kernel benchmarks, cold/warm kernel compile times, the slangtorch x CUDA matrix (GPU part),
# a short training run on a synthetic NeRF-synthetic-format scene, the viewer's cost to it, and
# (asked for by name) the quality benchmark on the Mitsuba scenes.
#
#     tools/gpu_check.sh [STEP ...]   (default: env tests train bench compile compat viewer)
#
# Steps: env, tests, train, bench, compile, compat, viewer, quality, schedule. Every step runs under `timeout` and
# its output goes to $OUT/<step>.log (OUT defaults to ./gpu-check); a failing step does not stop the
# others, and the exit status is that of the first failure.
#
# Environment knobs (defaults in brackets):
#   WHEELS        folder of wheels installed with --no-deps into /tmp/gpu-check-site and put on
#                 PYTHONPATH first (for machines without network: slangtorch, setuptools<81) [.whl]
#   TRAIN_STEPS   training steps [300]; TRAIN_SIZE scene width=height in pixels [200]
#   TRAIN_ARGS    extra `key=value` overrides for the training run []
#   TEST_PACKAGES packages whose `cuda` tests run [all five]
#   BENCH_ARGS_MC / BENCH_ARGS_RS   arguments of the two benchmarks [their defaults]
#   COMPILE_LOADERS  loaders for tools/bench_compile.py [nvrtc,slangtorch]
#   COMPAT_SLANGTORCH  slangtorch versions for tools/compat.py [1.3.7,1.3.11,1.3.22]
#   VIEWER_STEPS  training steps per run of benchmarks/bench_viewer.py [300] (needs viser in
#                 $WHEELS; a scripted client stands in for the browser); VIEWER_ARGS more
#                 arguments of it (e.g. --modes off orbit)
#   QUALITY_SCENES  the rendered scenes of the quality benchmark [datasets/quality] (carry them:
#                 scripts/render_quality_scenes.py makes them); QUALITY_ARGS arguments of
#                 benchmarks/bench_quality.py (e.g. --plan FILE --parallel 12); its results and
#                 run logs are packed into $OUT/quality.tgz
#   SCHEDULE_EXPERIMENTS  experiments of the scale rehearsal (benchmarks/bench_schedule.py), each
#                 under its memory class [nerf_synthetic mip360_24gb mip360 mip360_140gb];
#                 SCHEDULE_STEPS steps per stage [30]; SCHEDULE_ARGS more arguments of it (e.g.
#                 --profile-steps 3); its sources are the quality scenes
#   T_<STEP>      time limit of a step in seconds (T_TESTS, T_TRAIN, ...)
# Our own packages are used from the checkout (PYTHONPATH=packages/*/src); nothing is installed.
set -u -o pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
PY=${PYTHON:-python3}
SRC="$ROOT/packages/slang-kernel-runtime/src"
SRC="$SRC:$ROOT/packages/slang-marching-cubes/src:$ROOT/packages/slang-rasterizer/src"
SRC="$SRC:$ROOT/packages/meshtryoshka-data/src:$ROOT/packages/meshtryoshka-train/src"
WHEELS=${WHEELS:-.whl}
SITE=/tmp/gpu-check-site
if [ -z "${GPU_CHECK_READY:-}" ] && compgen -G "$WHEELS/*.whl" >/dev/null; then
    # one slangtorch only (the newest) goes on the path; tools/compat.py unpacks the others
    newest=$(ls "$WHEELS"/slangtorch-*.whl 2>/dev/null | sort -V | tail -1)
    others=$(ls "$WHEELS"/*.whl | grep -v '/slangtorch-' | grep -v '/setuptools-' || true)
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" $newest $others || echo "gpu_check: wheel install failed"
    SRC="$SITE:$SRC"
fi
if [ -z "${GPU_CHECK_READY:-}" ]; then
    export PYTHONPATH="$SRC${PYTHONPATH:+:$PYTHONPATH}" GPU_CHECK_READY=1
    # fresh kernel caches, so the first use in `tests` compiles cold
    export XDG_CACHE_HOME=${XDG_CACHE_HOME:-/tmp/gpu-check-cache}
fi
STATUS=0

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit}s) $(date -u +%H:%M:%S)" | tee -a "$OUT/$name.log"
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$0" --one "$@" 2>&1 | tee -a "$OUT/$name.log"
    local rc=$?
    echo "=== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/$name.log"
    [ $rc -ne 0 ] && [ $STATUS -eq 0 ] && STATUS=$rc
    return 0
}

run_env() {
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    $PY - <<'EOF'
import importlib, platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
for name in ("slangtorch", "hatchling", "setuptools", "click", "numpy", "PIL", "pytest", "nox"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"), module.__file__)
    except Exception as error:
        print(name, "missing:", type(error).__name__)
EOF
}

run_tests() {
    local rc=0 package
    for package in ${TEST_PACKAGES:-slang-kernel-runtime slang-marching-cubes slang-rasterizer \
        meshtryoshka-data meshtryoshka-train}; do
        echo "--- $package"
        $PY -m pytest "packages/$package/tests" -m cuda -q -p no:cacheprovider -rfE \
            --durations=5 || rc=1
    done
    return $rc
}

write_scene() {  # write_scene FOLDER: the synthetic NeRF-synthetic-format sphere scene
    rm -rf "$1"
    $PY - "$1" "${TRAIN_SIZE:-200}" <<'EOF'
import sys
from meshtryoshka_data import write_blender_scene
write_blender_scene(sys.argv[1] + "/sphere", n_train=40, n_val=2, n_test=4, size=int(sys.argv[2]))
print("scene written:", sys.argv[1])
EOF
}

run_train() {
    local scene=/tmp/gpu-check-scene run=/tmp/gpu-check-run
    rm -rf "$run"
    write_scene "$scene" || return 1
    # the CLI, in-process, so the peak memory of the whole run can be read afterwards
    # shellcheck disable=SC2086
    $PY - "$run" --experiment nerf_synthetic "dataset.root=$scene" dataset.scene=sphere \
        "train.steps=${TRAIN_STEPS:-300}" train.log_interval=50 train.eval_interval=0 \
        train.checkpoint_interval=0 ${TRAIN_ARGS:-} <<'EOF'
import json, sys, time
import torch
from meshtryoshka_train.cli import main
run_dir = sys.argv[1]
started = time.perf_counter()
try:
    main.main(["--run-dir", run_dir, "--overwrite", *sys.argv[2:]], standalone_mode=False)
finally:
    wall = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    print(f"train: wall {wall:.1f} s, peak torch.cuda.max_memory_allocated {peak:.2f} GiB")
lines = [json.loads(line) for line in open(run_dir + "/metrics.jsonl")]
train = [e for e in lines if e.get("event") == "train"]
test = [e for e in lines if e.get("event") == "test"]
if train:
    last = train[-1]
    rates = [e["steps_per_second"] for e in train[1:]] or [train[0]["steps_per_second"]]
    print(f"train: last step {last['step']}, train psnr {last['psnr']:.2f}, faces "
          f"{last['faces']:.0f}, resolution {last['resolution']}, step time "
          f"{1e3 / (sum(rates) / len(rates)):.1f} ms (mean over windows after the first)")
for entry in test:
    print("test:", json.dumps(entry))
EOF
    local rc=$?
    cp "$run/metrics.jsonl" "$OUT/train_metrics.jsonl" 2>/dev/null
    return $rc
}

run_bench() {
    local rc=0
    $PY packages/slang-kernel-runtime/benchmarks/bench_launch.py --gpu || rc=1
    # shellcheck disable=SC2086
    $PY packages/slang-marching-cubes/benchmarks/bench_extract.py ${BENCH_ARGS_MC:-} || rc=1
    # shellcheck disable=SC2086
    $PY packages/slang-rasterizer/benchmarks/bench_render.py ${BENCH_ARGS_RS:-} || rc=1
    return $rc
}

run_compile() {
    $PY tools/bench_compile.py --loaders "${COMPILE_LOADERS:-nvrtc,slangtorch}"
}

run_compat() {
    # offline: wheels from $WHEELS; NVRTC of CUDA 13.0 is the one torch's environment has
    # written to $OUT after each slangtorch version, so a run cut short still brings back rows
    local rc=0
    cp docs/compat.md "$OUT/compat.md"
    $PY tools/compat.py --slangtorch "${COMPAT_SLANGTORCH:-1.3.7,1.3.11,1.3.22}" \
        --cuda "${COMPAT_CUDA:-13.0}" --wheels "$WHEELS" --cache /tmp/gpu-check-compat \
        --output "$OUT/compat.md" || rc=$?
    for f in /tmp/gpu-check-compat/logs/gpu-*.txt; do
        [ -f "$f" ] && { echo "--- $f"; grep -E "passed|failed|error" "$f" | tail -5; }
    done
    return $rc
}

run_viewer() {
    local scene=/tmp/gpu-check-scene
    if ! $PY -c "import viser" 2>/dev/null; then
        echo "viewer: skipped (viser is not installed; put its wheels in \$WHEELS)"
        return 0
    fi
    write_scene "$scene" || return 1
    # shellcheck disable=SC2086
    $PY packages/meshtryoshka-train/benchmarks/bench_viewer.py --experiment nerf_synthetic \
        --steps "${VIEWER_STEPS:-300}" --repeats 2 --client script "dataset.root=$scene" \
        dataset.scene=sphere ${VIEWER_ARGS:-}
}

run_quality() {
    local out=/tmp/gpu-check-quality rc
    rm -rf "$out"
    # shellcheck disable=SC2086
    $PY packages/meshtryoshka-train/benchmarks/bench_quality.py \
        --scenes-dir "${QUALITY_SCENES:-datasets/quality}" --out "$out" ${QUALITY_ARGS:-}
    rc=$?
    (cd "$out" && tar czf "$OUT/quality.tgz" results.jsonl runs/*.log runs/*/metrics.jsonl \
        runs/*/eval/*/metrics.json 2>/dev/null)
    return $rc
}

run_schedule() {
    local rc=0 experiment gib source scenes=${QUALITY_SCENES:-datasets/quality}
    for experiment in ${SCHEDULE_EXPERIMENTS:-nerf_synthetic mip360_24gb mip360 mip360_140gb}; do
        case $experiment in
            mip360_24gb) gib=24 ;; mip360_140gb) gib=140 ;; mip360*) gib=80 ;; *) gib=0 ;;
        esac
        case $experiment in mip360*) source=$scenes/garden ;; *) source=$scenes/texture ;; esac
        echo "--- $experiment (memory class: ${gib} GiB, 0 = none)"
        # shellcheck disable=SC2086
        $PY packages/meshtryoshka-train/benchmarks/bench_schedule.py --experiment "$experiment" \
            --source "$source" --steps-per-stage "${SCHEDULE_STEPS:-30}" --memory-gib "$gib" \
            ${SCHEDULE_ARGS:-} || rc=1
    done
    return $rc
}

if [ "${1:-}" = "--one" ]; then  # one step's function, in a child that `timeout` can stop
    "$2"
    exit $?
fi

STEPS=${*:-env tests train bench compile compat viewer}
for s in $STEPS; do
    case $s in
        env) step env "${T_ENV:-60}" run_env ;;
        tests) step tests "${T_TESTS:-240}" run_tests ;;
        train) step train "${T_TRAIN:-150}" run_train ;;
        bench) step bench "${T_BENCH:-150}" run_bench ;;
        compile) step compile "${T_COMPILE:-150}" run_compile ;;
        compat) step compat "${T_COMPAT:-200}" run_compat ;;
        viewer) step viewer "${T_VIEWER:-200}" run_viewer ;;
        quality) step quality "${T_QUALITY:-540}" run_quality ;;
        schedule) step schedule "${T_SCHEDULE:-540}" run_schedule ;;
        *) echo "gpu_check: unknown step '$s'"; STATUS=2 ;;
    esac
done
echo "gpu_check: done, status $STATUS"
exit $STATUS
