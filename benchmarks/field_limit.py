"""How close one evaluation of the JoMA block's field comes to the machine's float64 limit.

Measured in one run: the machine's float64 matmul rate (a large `jnp.dot`, the peak the arithmetic
could reach), and per batch size B the time per member of one vmapped evaluation of the joint
field of the Fig. 2 block (M_c = K = 20, d = 30, softmax attention, SiLU, T = 0.5) in two forms:

- `autodiff on W`: `JointFlow.__call__`, the autodiff gradient of the block's loss on the full
  d × K weights (the oracle, and what the solver integrated before the projected coordinates);
- `closed form on Uᵀ W`: `JointFlow.projected_rate`, the closed-form gradient on the (M_c + 1) × K
  projected weights (what `simulate` integrates now, `AbstractFlow.solved`);

with XLA's count of the floating-point operations of each (`cost_analysis`), the rate they run at,
and that rate as a fraction of the measured peak.

    python benchmarks/field_limit.py              # B = 1, 64, 1024
    python benchmarks/field_limit.py --quick      # small sizes, for CI
"""

import argparse

import jax
import jax.numpy as jnp
from _timing import median_seconds

import jomasim as js


def peak_gflops(size: int) -> float:
    """GFLOP/s of one float64 `size × size` matmul (2 size³ operations)."""
    a = jax.random.normal(jax.random.key(0), (size, size))
    b = jax.random.normal(jax.random.key(1), (size, size))
    product = jax.jit(jnp.dot)
    seconds = median_seconds(lambda: product(a, b), repeats=5)
    return 2 * size**3 / seconds / 1e9


def members(batch: int):
    """B different settings of the Fig. 2 block (softmax, SiLU) with their joint states."""
    def member(key):
        joint = js.JointFlow(js.make_token_data(key), activation="silu", temperature=0.5)
        return joint, joint.initial_state(key, 0.3)

    return jax.vmap(member)(jax.random.split(jax.random.key(0), batch))


def field_row(name: str, evaluate, fields, states, batch: int, peak: float) -> dict:
    """Time, FLOPs and achieved rate of one vmapped field evaluation per member."""
    compiled = jax.jit(jax.vmap(evaluate))
    cost = compiled.lower(fields, states).compile().cost_analysis()
    flops = (cost[0] if isinstance(cost, list) else cost)["flops"] / batch
    seconds = median_seconds(lambda: compiled(fields, states), repeats=20) / batch
    rate = flops / seconds / 1e9
    return {"field": name, "B": batch, "us_per_member": seconds * 1e6, "kflop_per_member": flops / 1e3,
            "gflops": rate, "fraction_of_peak": rate / peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument("--batches", default="1,64,1024", help="comma-separated batch sizes (default 1,64,1024)")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    batches = [8] if args.quick else [int(batch) for batch in args.batches.split(",")]
    peak = peak_gflops(256 if args.quick else 2048)
    print(f"float64 matmul peak: {peak:.1f} GFLOP/s ({jax.devices()[0].device_kind})")
    print(f"{'field':>22} {'B':>5} {'µs/member':>10} {'kFLOP/member':>13} {'GFLOP/s':>8} {'of peak':>8}")
    for batch in batches:
        fields, states = members(batch)
        projected = jax.vmap(lambda field, state: field.project(state))(fields, states)
        for name, evaluate, state in (("autodiff on W", lambda f, y: f(0.0, y, None), states),
                                      ("closed form on Uᵀ W", lambda f, p: f.projected_rate(0.0, p), projected)):
            row = field_row(name, evaluate, fields, state, batch, peak)
            print(f"{row['field']:>22} {batch:5d} {row['us_per_member']:10.2f} {row['kflop_per_member']:13.1f} "
                  f"{row['gflops']:8.2f} {100 * row['fraction_of_peak']:7.1f}%")


if __name__ == "__main__":
    main()
