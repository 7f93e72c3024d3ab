"""`Trajectory`: what `simulate` returns, and how a solve ended (`Status`), in codes and words."""

import enum

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ShapeMismatchError
from ..metrics import mean_attention_entropy
from ._flows import AbstractFlow


class Status(enum.IntEnum):
    """How a trajectory ended: an integer code (what the compiled solve returns) that carries its
    message (`describe`), as diffrax's `RESULTS` do."""

    OK = 0, "ok"
    MAX_STEPS = 1, "max steps reached at {clock} = {time:.6g}"
    BLOWUP = 2, "blow-up at {clock} = {time:.6g}"
    NONFINITE = 3, "NaN or infinity in the state before {clock} = {time:.6g}"
    SOLVER_FAILURE = 4, "solver failure at {clock} = {time:.6g}"

    def __new__(cls, code: int, message: str):
        member = int.__new__(cls, code)
        member._value_ = code
        member.message = message
        return member

    def describe(self, time, clock: str = "t") -> str:
        """This ending in words, at `time` on `clock` (`"t"`, or `"step"`)."""
        return self.message.format(clock=clock, time=time)


def status_messages(status, t_final, clock: str = "t") -> list[str]:
    """What happened to each trajectory, in words, from its `Status` codes and the times reached.

    **Arguments:**

    - `status`, `t_final`: scalars or `(B,)` arrays.
    - `clock`: what the times count (`"t"`, or `"step"` for times in SGD steps).

    **Returns:**

    One line per trajectory: `ok`, `blow-up at t = …`, `max steps reached at t = …`, ...
    """
    codes = np.atleast_1d(np.asarray(status))
    times = np.atleast_1d(np.asarray(t_final))
    return [Status(int(code)).describe(time, clock) for code, time in zip(codes, times)]


class Trajectory(eqx.Module):
    """The result of `simulate`: saved states, how each trajectory ended, and derived quantities.

    With a batch, every field below (except `ts`) has a leading batch axis.

    **Fields:**

    - `field`: the vector field (batched like the states).
    - `ts`: save times, `(n,)` (or `(B, n)` when `solve` was vmapped with its own times per member).
    - `ys`: states at `ts`, a pytree of arrays `([B,] n, ...)`. States at times after a trajectory
      stopped (blow-up, failure) are ±inf; see `reached`.
    - `t_final`: the time each trajectory reached (the last save time if it finished).
    - `status`: a `Status` code per trajectory.
    - `num_steps`, `num_accepted_steps`, `num_rejected_steps`: solver step counts.
    """

    field: AbstractFlow
    ts: jax.Array
    ys: object
    t_final: jax.Array
    status: jax.Array
    num_steps: jax.Array
    num_accepted_steps: jax.Array
    num_rejected_steps: jax.Array

    @property
    def batched(self) -> bool:
        """Whether this is a batch of trajectories (then `t_final` has a batch axis)."""
        return jnp.ndim(self.t_final) == 1

    @property
    def ok(self) -> jax.Array:
        """Whether each trajectory finished without trouble."""
        return self.status == Status.OK

    @property
    def reached(self) -> jax.Array:
        """`([B,] n)` mask of the save times each trajectory actually reached with finite states: a
        prefix of the saves (a state that is not finite ends it, whatever the solver said)."""
        saves = jnp.shape(self.t_final) + (self.ts.shape[-1], -1)
        finite = jnp.stack([jnp.all(jnp.isfinite(jnp.reshape(leaf, saves)), axis=-1)
                            for leaf in jax.tree_util.tree_leaves(self.ys)])
        reached = (self.ts <= jnp.expand_dims(self.t_final, -1)) & jnp.all(finite, axis=0)
        return jnp.cumprod(reached, axis=-1).astype(bool)

    def messages(self) -> list[str]:
        """One line per trajectory: `ok`, `blow-up at t = …`, `max steps reached at t = …`, ..."""
        return status_messages(self.status, self.t_final)

    def member(self, index: int) -> "Trajectory":
        """Trajectory `index` of a batch, as an unbatched `Trajectory`."""
        if not self.batched:
            raise ShapeMismatchError("member() needs a batched trajectory; this one is a single solve")
        parts = jax.tree_util.tree_map(
            lambda leaf: leaf[index],
            (self.field, self.ys, self.t_final, self.status, self.num_steps, self.num_accepted_steps, self.num_rejected_steps),
        )
        field, ys, t_final, status, *stats = parts
        ts = self.ts[index] if jnp.ndim(self.ts) == 2 else self.ts
        return Trajectory(field, ts, ys, t_final, status, *stats)

    def map_states(self, fn):
        """Applies `fn(field, y)` to every saved state; returns arrays `([B,] n, ...)`."""
        over_time = jax.vmap(fn, in_axes=(None, 0))
        if self.batched:
            return jax.vmap(over_time)(self.field, self.ys)
        return over_time(self.field, self.ys)

    def logits(self) -> jax.Array:
        """Attention logits z at every saved state, `([B,] n, M_c)`."""
        return self.map_states(lambda field, y: field.logits(y))

    def attention(self) -> jax.Array:
        """Attention distribution at every saved state, `([B,] n, M_c[, K])`."""
        return self.map_states(lambda field, y: field.attention(y))

    def entropy(self) -> jax.Array:
        """Attention entropy (nats) at every saved state, averaged over classes, `([B,] n)`."""
        return self.map_states(lambda field, y: mean_attention_entropy(field.attention(y)))
