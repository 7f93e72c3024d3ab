#!/usr/bin/env bash
# The GPU measurements that benchmarks/README.md still lacks, in one command meant for a short
# lease (each step is cut off at its own time limit, 7 minutes in all): UnrolledERK against
# Diffrax's stage loop and saving only the two ends (both in alternation, 5 rounds), and the
# throughput table at B = 1024 (the toy against the RK4 floor). Run from the repository root on
# a machine whose Python already has jax (with CUDA), diffrax, equinox, flax, optax and scipy;
# jomasim itself is imported from this checkout (PYTHONPATH), nothing is installed (such machines
# often reach no package index).
#
#   bash benchmarks/on_gpu.sh            # the measurements; every log also goes to $OUT (or gpu-results/)
#   bash benchmarks/on_gpu.sh --quick    # the same steps at the scripts' --quick sizes, no time limits (a dry run, any machine)
set -uo pipefail
cd "$(dirname "$0")/.."

out="${OUT:-gpu-results}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1

# sizes: the arguments of a full run (or --quick); limit: its time limit (none in a dry run,
# whose speed depends on the machine)
if [ "${1:-}" = "--quick" ]; then
    sizes() { echo --quick; }
    limit() { echo 0; }
else
    sizes() { echo "$1"; }
    limit() { echo "$1"; }
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import jax, diffrax, jomasim; print('jax', jax.__version__, 'diffrax', diffrax.__version__, jax.devices(), jomasim.__file__)"
} 2>&1 | tee "$out/device.txt"

status=0
# step: log name, time limit in seconds, then the command
step() {
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*" | tee "$out/$name.txt"
    timeout "$(limit "$limit")" "$@" 2>&1 | tee -a "$out/$name.txt"
    local code=${PIPESTATUS[0]}
    [ "$code" -eq 0 ] || { echo "== $name exited with $code" | tee -a "$out/$name.txt"; status=1; }
}

step unroll 150 python3 benchmarks/unroll.py $(sizes "--batches 1,64,1024 --rounds 5")
step saves 90 python3 benchmarks/saves.py $(sizes "--batches 1,1024 --rounds 5")
step ode_throughput 180 python3 benchmarks/ode_throughput.py $(sizes "--batches 1024")
exit $status
