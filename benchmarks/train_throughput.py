"""Training throughput on the Fig. 2 model: many configurations vmapped in one call vs one after another.

The §3.5 block (softmax attention, linear activation, T = 0.5, M_c = 20, K = 20, d = 30), full-batch
SGD, C configurations (each its own seed, data and learning rates η_w, η_z ∈ [0.05, 0.2]) × S steps:

- jomasim vmapped: all C configurations in one jitted, vmapped `lax.scan` (`train_blocks`);
- jomasim one by one: the same compiled scan, called for one configuration at a time;
- PyTorch one by one: the authors' loop (`torch.optim.SGD`, forward, backward, step), float64 on
  the CPU, for each configuration (needs `torch`, skipped when absent).

The PyTorch run of the first configuration is checked against jomasim's (the same model and
data, so the final parameters must agree). Throughput is configuration-steps per second; loops
are timed on a subset of configurations and scaled. Medians after a warm-up call.

    python benchmarks/train_throughput.py             # 64 configurations x 2000 steps
    python benchmarks/train_throughput.py --quick     # 4 x 200, for CI
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from _timing import median_seconds

import jomasim as js
from jomasim.experiments.block import train_blocks

jax.config.update("jax_enable_x64", True)  # jomasim computes in float64, as its CLI does


def configurations(count: int):
    """`count` Fig. 2 blocks with their own seeds and learning rates, batched."""

    def one(key):
        data_key, init_key = jax.random.split(key)
        joint = js.JointFlow(js.make_token_data(data_key), attention="softmax", activation="linear", temperature=0.5)
        return joint, joint.initial_state(init_key)

    joints, y0s = jax.vmap(one)(jax.random.split(jax.random.key(0), count))
    rates = jax.random.uniform(jax.random.key(1), (2, count), minval=0.05, maxval=0.2)
    return joints, y0s, rates[0], rates[1]


def _member(tree, index: int):
    return jax.tree_util.tree_map(lambda a: a[index : index + 1], tree)


def _torch_train(joint, y0, eta_w: float, eta_z: float, steps: int):
    """The authors' PyTorch loop for one configuration; returns the final (W, z) as NumPy arrays."""
    import torch

    X = torch.tensor(np.array(joint.data.X))
    U = torch.tensor(np.array(joint.data.U))
    U_c, u_q = U[:, :-1], U[:, -1:]
    W = torch.tensor(np.array(y0[0])).requires_grad_(True)
    z = torch.tensor(np.array(y0[1])).requires_grad_(True)
    optimizer = torch.optim.SGD([{"params": [W], "lr": eta_w}, {"params": [z], "lr": eta_z}])
    labels = torch.arange(X.shape[1])
    temperature = float(joint.temperature)
    for _ in range(steps):
        optimizer.zero_grad()
        B = torch.softmax(z[:, None] / temperature + torch.log(X), dim=0)
        output = (U_c @ B + u_q).T @ W
        torch.nn.functional.cross_entropy(output, labels).backward()
        optimizer.step()
    return W.detach().numpy(), z.detach().numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    args = parser.parse_args()
    count, steps, loop, repeats = (4, 200, 2, 1) if args.quick else (64, 2000, 8, 3)
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}, float64; {count} configurations x {steps} steps")
    joints, y0s, eta_w, eta_z = configurations(count)
    save = jnp.array([steps])

    seconds = {"jomasim vmapped": median_seconds(lambda: train_blocks(joints, y0s, eta_w, eta_z, steps, save).W, repeats)}

    def one_by_one():
        return [train_blocks(_member(joints, i), _member(y0s, i), eta_w[i], eta_z[i], steps, save).W for i in range(loop)]

    seconds["jomasim one by one"] = median_seconds(one_by_one, repeats) * count / loop
    try:
        import torch

        torch.set_num_threads(1)
        first = jax.tree_util.tree_map(lambda a: a[0], (joints, y0s))
        W_torch, z_torch = _torch_train(*first, float(eta_w[0]), float(eta_z[0]), steps)
        reference = train_blocks(_member(joints, 0), _member(y0s, 0), eta_w[0], eta_z[0], steps, save)
        np.testing.assert_allclose(W_torch, reference.W[0, -1], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(z_torch, reference.z[0, -1], rtol=1e-8, atol=1e-10)
        start = time.perf_counter()
        for i in range(loop):
            member = jax.tree_util.tree_map(lambda a, i=i: a[i], (joints, y0s))
            _torch_train(*member, float(eta_w[i]), float(eta_z[i]), steps)
        seconds["PyTorch one by one"] = (time.perf_counter() - start) * count / loop
    except ImportError:
        print("  (torch not installed: the PyTorch baseline is skipped)")

    base = seconds["jomasim vmapped"]
    for method, value in seconds.items():
        print(f"{method:20s} {count * steps / value:12.0f} config-steps/s   {value:8.2f} s   "
              f"jomasim vmapped is {value / base:7.1f}x faster")


if __name__ == "__main__":
    main()
