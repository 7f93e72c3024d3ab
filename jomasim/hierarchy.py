"""Hierarchical latent data (JOMA_MATH §5): the Table 1 generator and the binary latent tree.

`make_hierarchy` builds the authors' generator (`decoder_only_hier.py`): N0 level-0 latents, each a
set of N_ch tokens; N1 level-1 latents, each a set of N_ch level-0 latents; C classes, each a set
of N_ch level-1 latents. A sample activates its class and, level by level, every child of an
active latent (deterministic given the class), or, with `rho < 1`, each child through the binary
channel of (J25) (on with probability (1 + ρ)/2 under an active parent, (1 − ρ)/2 otherwise).
`sample_sequences` turns the active tokens into the code's sequences (pre-padded, ascending ids).

`tree_cooccurrence` is the Monte-Carlo check of Theorem 5: on a complete binary latent tree with
channels ρ, P[y_l = 1 | y_m = 1] against the exact (J26) as a function of the height of the
lowest common ancestor.
"""

import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import OutOfRangeError, check_integer


class Hierarchy(NamedTuple):
    """The latent structure of one seed, as 0/1 membership matrices (a pytree of arrays, so a batch
    of hierarchies with equal sizes stacks and vmaps).

    **Fields:**

    - `tokens`: `(N0, V)`, row i = the tokens of level-0 latent i (V = vocabulary incl. padding).
    - `level1`: `(N1, N0)`, row j = the level-0 latents of level-1 latent j.
    - `classes`: `(C, N1)`, row c = the level-1 latents of class c.
    """

    tokens: jax.Array
    level1: jax.Array
    classes: jax.Array


def _unique_sets(rng: np.random.Generator, count: int, pool: int, size: int) -> np.ndarray:
    """`count` distinct sets of `size` distinct items from `range(pool)` (in the order drawn), as a
    0/1 matrix. The caller checks that enough distinct sets exist."""
    chosen: list[tuple[int, ...]] = []
    while len(chosen) < count:
        items = tuple(sorted(rng.choice(pool, size, replace=False).tolist()))
        if items not in chosen:
            chosen.append(items)
    members = np.zeros((count, pool))
    for row, items in enumerate(chosen):
        members[row, list(items)] = 1.0
    return members


def check_hierarchy_sizes(n0: int, n1: int, n_classes: int, n_children: int, vocab: int) -> None:
    """Checks the sizes of `make_hierarchy` without building anything.

    **Raises:**

    `OutOfRangeError` naming the first bad size.
    """
    for name, value, least in (("n0", n0, 1), ("n1", n1, 1), ("n_classes", n_classes, 1), ("n_children", n_children, 1),
                               ("vocab", vocab, 2)):
        check_integer(name, value, least=least)
    for name, count, pool in (("n0", n0, vocab - 1), ("n1", n1, n0), ("n_classes", n_classes, n1)):
        if n_children > pool or math.comb(pool, n_children) < count:
            raise OutOfRangeError(f"{name}={count} distinct sets of n_children={n_children} out of {pool} do not exist; "
                                  "use fewer latents or more items below them")


def make_hierarchy(seed: int, n0: int = 10, n1: int = 20, n_classes: int = 20, n_children: int = 2,
                   vocab: int = 100) -> Hierarchy:
    """The Table 1 generator's latent structure for one seed (NumPy's generator; sets within a level
    are distinct, as the authors' rejection sampling makes them).

    **Arguments:**

    - `seed`: the generator seed.
    - `n0`, `n1`, `n_classes`: latents per level (N0, N1, C).
    - `n_children`: N_ch, children per latent at every level.
    - `vocab`: token ids (the last, `vocab − 1`, is the padding token and never a child).

    **Returns:**

    A `Hierarchy` (float 0/1 matrices).
    """
    check_hierarchy_sizes(n0, n1, n_classes, n_children, vocab)
    rng = np.random.default_rng(seed)
    tokens = np.zeros((n0, vocab))
    tokens[:, : vocab - 1] = _unique_sets(rng, n0, vocab - 1, n_children)
    level1 = _unique_sets(rng, n1, n0, n_children)
    classes = _unique_sets(rng, n_classes, n1, n_children)
    return Hierarchy(jnp.asarray(tokens), jnp.asarray(level1), jnp.asarray(classes))


def active_latents(hierarchy: Hierarchy, labels: jax.Array, key: jax.Array | None = None,
                   rho: float = 1.0) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Which latents and tokens are on for each label, top-down. Traceable.

    **Arguments:**

    - `hierarchy`: the structure.
    - `labels`: class ids `(B,)`.
    - `key`, `rho`: with a key, each node of the hierarchy is on with probability (1 + ρ)/2 when
      one of its parents is on and (1 − ρ)/2 otherwise (J25), drawn from `key` (tokens that
      belong to no latent stay off); without one (default), every child of an active latent is
      on and nothing else, as the authors' generator.

    **Returns:**

    `(tokens, level0, level1, classes)`: 0/1 arrays `(B, V)`, `(B, N0)`, `(B, N1)`, `(B, C)`.
    """
    classes = jax.nn.one_hot(labels, hierarchy.classes.shape[0])
    keys = jax.random.split(key, 3) if key is not None else [None] * 3
    states = [classes]
    for members, step_key in zip((hierarchy.classes, hierarchy.level1, hierarchy.tokens), keys):
        parent_on = (states[-1] @ members) > 0
        if step_key is None:
            child = parent_on
        else:
            chance = jnp.where(parent_on, (1.0 + rho) / 2.0, (1.0 - rho) / 2.0) * (jnp.sum(members, axis=0) > 0)
            child = jax.random.uniform(step_key, parent_on.shape) < chance
        states.append(child.astype(classes.dtype))
    _, level1, level0, tokens = states
    return tokens, level0, level1, classes


def sample_sequences(hierarchy: Hierarchy, key: jax.Array, batch: int, length: int = 30,
                     rho: float = 1.0) -> tuple[jax.Array, jax.Array, tuple[jax.Array, jax.Array]]:
    """A batch of the authors' sequences: label uniform, its active tokens in ascending id order at
    the end, padding (`V − 1`) before them. Traceable.

    **Arguments:**

    - `hierarchy`, `rho`: as `active_latents`.
    - `key`: a `jax.random` key.
    - `batch`, `length`: B and L (at least the most tokens a sample can activate; extra active
      tokens of a noisy sample beyond L are dropped from the front, the lowest ids first).

    **Returns:**

    `(tokens, labels, (level0, level1))`: ids `(B, L)`, classes `(B,)`, and the ground-truth
    activations of the two latent levels (`(B, N0)`, `(B, N1)`).
    """
    check_integer("length", length, least=1)
    label_key, noise_key = jax.random.split(key)
    vocab = hierarchy.tokens.shape[1]
    labels = jax.random.randint(label_key, (batch,), 0, hierarchy.classes.shape[0])
    active, level0, level1, _ = active_latents(hierarchy, labels, noise_key if rho < 1.0 else None, rho)
    order = jnp.sort(jnp.where(active > 0, jnp.arange(vocab), -1), axis=1)[:, -length:]
    return jnp.where(order < 0, vocab - 1, order), labels, (level0, level1)


def _lca_height(leaf_a: int, leaf_b: int) -> int:
    height = 0
    while leaf_a != leaf_b:
        leaf_a, leaf_b, height = leaf_a // 2, leaf_b // 2, height + 1
    return height


def cooccurrence_exact(height: int, rho: float, rho0: float) -> float:
    """P[y_l = 1 | y_m = 1] of (J26) for two leaves whose lowest common ancestor is `height` levels up,
    channels ρ and E[s_ancestor] = ρ₀."""
    decay = rho ** height
    return 0.5 * (1.0 + decay * (rho0 + decay) / (1.0 + rho0 * decay))


def tree_cooccurrence(depth: int, rho: float, root_on: float, samples: int, seed: int = 0) -> dict[int, tuple[float, float]]:
    """Monte-Carlo P[y_l = 1 | y_m = 1] on a complete binary latent tree against (J26).

    **Arguments:**

    - `depth`: levels below the root (2^depth leaves = tokens).
    - `rho`: the channel of every edge (J25), in (0, 1].
    - `root_on`: P[root = 1] (so ρ₀ = 2·root_on − 1 at the root; deeper ancestors get ρ₀ from the
      channels: E[s] = ρ^h (2·root_on − 1) at depth h).
    - `samples`: Monte-Carlo samples.
    - `seed`: the NumPy generator seed.

    **Returns:**

    `{height: (estimated, exact)}` for each height 1..depth of the lowest common ancestor,
    averaged over every pair of distinct leaves with that ancestor height.
    """
    check_integer("depth", depth, least=1)
    check_integer("samples", samples, least=1)
    if not 0.0 < rho <= 1.0 or not 0.0 <= root_on <= 1.0:
        raise OutOfRangeError(f"rho={rho!r} must lie in (0, 1] and root_on={root_on!r} in [0, 1]")
    rng = np.random.default_rng(seed)
    level = (rng.random((samples, 1)) < root_on)
    for _ in range(depth):
        parents = np.repeat(level, 2, axis=1)
        keep = rng.random(parents.shape) < (1.0 + rho) / 2.0
        level = np.where(keep, parents, ~parents)
    leaves = level.astype(float)
    together = leaves.T @ leaves
    on = leaves.sum(axis=0)
    result = {}
    for height in range(1, depth + 1):
        pairs = [(a, b) for a, b in itertools.permutations(range(2 ** depth), 2) if _lca_height(a, b) == height]
        estimate = float(np.mean([together[a, b] / on[b] for a, b in pairs]))
        rho0 = rho ** (depth - height) * (2.0 * root_on - 1.0)
        result[height] = (estimate, cooccurrence_exact(height, rho, rho0))
    return result
