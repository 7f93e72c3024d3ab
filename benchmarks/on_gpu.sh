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

quick=false
[ "${1:-}" = "--quick" ] && quick=true

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import jax, diffrax, jomasim; print('jax', jax.__version__, 'diffrax', diffrax.__version__, jax.devices(), jomasim.__file__)"
} 2>&1 | tee "$out/device.txt"

status=0
# step NAME SECONDS SCRIPT ARGUMENTS...: benchmarks/SCRIPT with the arguments of a full run, cut
# off after SECONDS; a dry run gives it --quick instead and no limit (its speed is the machine's)
step() {
    local name=$1 seconds=$2 script=$3
    shift 3
    local arguments=("$@")
    if $quick; then seconds=0; arguments=(--quick); fi
    echo "== $name: $script ${arguments[*]}" | tee "$out/$name.txt"
    timeout "$seconds" python3 "benchmarks/$script" "${arguments[@]}" 2>&1 | tee -a "$out/$name.txt"
    local code=${PIPESTATUS[0]}
    [ "$code" -eq 0 ] || { echo "== $name exited with $code" | tee -a "$out/$name.txt"; status=1; }
}

step unroll 150 unroll.py --batches 1,64,1024 --rounds 5
step saves 90 saves.py --batches 1,1024 --rounds 5
step ode_throughput 180 ode_throughput.py --batches 1024
exit $status
