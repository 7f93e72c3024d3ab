"""`UnrolledERK`: a Diffrax explicit Runge–Kutta solver whose stages are straight-line code.

Diffrax evaluates the stages of every Runge–Kutta step inside an inner `while_loop` over the
stage index (one code path for explicit, implicit and IMEX tableaus, traced once). For small
fields (the JoMA toys) that inner loop, not the arithmetic, is most of the cost of a step: a
loop iteration per stage with dynamic slicing of the stage buffer on a CPU, and a kernel launch
plus a read of the loop condition per stage on a GPU. `UnrolledERK` keeps the wrapped solver's
tableau, order, error estimate and dense interpolation, and writes the stages out: a step is one
straight-line program. Everything else (step-size controller, `SaveAt`, events, statistics)
stays Diffrax's.
"""

import diffrax as dfx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import OutOfRangeError


def _weighted_sum(weights, increments):
    """`Σ_j weights[j] · increments[j]` leaf by leaf, as one contraction of the stacked increments.

    A contraction rather than a chain of scaled additions: on CPUs XLA re-fuses such chains into
    every consumer and recomputes them there; the contraction is materialised once.

    **Arguments:**

    - `weights`: the tableau's numbers (known at trace time).
    - `increments`: pytrees of one structure, at least as many as weights.

    **Returns:**

    A pytree of the structure of the increments.
    """
    weights = np.asarray(weights, dtype=float)
    return jax.tree_util.tree_map(
        lambda *parts: jnp.tensordot(jnp.asarray(weights, dtype=parts[0].dtype), jnp.stack(parts), axes=1),
        *increments[: len(weights)],
    )


def _add(y, increment):
    return jax.tree_util.tree_map(jnp.add, y, increment)


class UnrolledERK(dfx.AbstractAdaptiveSolver):
    """Wraps a Diffrax explicit Runge–Kutta solver (`Tsit5`, `Dopri5`, `Dopri8`, `Heun`, ...)
    and takes its steps with the stages unrolled at trace time.

    The results are those of the wrapped solver up to floating-point reassociation: same
    tableau, same error estimate, same dense output, same first-same-as-last reuse. Compile time
    grows with the number of stages, since the field is compiled once per stage: little for the
    toys, seconds for the JoMA block flows (`benchmarks/README.md`, `unroll.py`).

    **Arguments:**

    - `solver`: an instance of a `diffrax.AbstractERK` subclass with a single Butcher tableau.
    """

    solver: dfx.AbstractERK

    def __check_init__(self):
        if not isinstance(self.solver, dfx.AbstractERK) or not isinstance(self.solver.tableau, dfx.ButcherTableau):
            raise OutOfRangeError(
                f"UnrolledERK wraps an explicit Runge-Kutta solver with one tableau (Tsit5, Dopri5, ...); got {self.solver!r}"
            )

    @property
    def term_structure(self):
        return self.solver.term_structure

    @property
    def interpolation_cls(self):  # pyright: ignore
        return self.solver.interpolation_cls

    @property
    def term_compatible_contr_kwargs(self):
        return self.solver.term_compatible_contr_kwargs

    def order(self, terms):
        return self.solver.order(terms)

    def error_order(self, terms):
        return self.solver.error_order(terms)

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def init(self, terms, t0, t1, y0, args):
        """The first stage's field value f(t0, y0) when the tableau reuses its last stage (FSAL)."""
        return terms.vf(t0, y0, args) if self.solver.tableau.fsal else None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        tableau = self.solver.tableau
        control = terms.contr(t0, t1)
        if tableau.fsal:
            f0 = solver_state
            if made_jump is not False:
                # after a jump the stored value is stale; the predicate is unbatched (as in Diffrax)
                # so that under vmap this stays a branch and not an extra evaluation every step
                f0 = jax.lax.cond(eqxi.unvmap_any(made_jump), lambda: terms.vf(t0, y0, args), lambda: f0)
        else:
            f0 = terms.vf(t0, y0, args)
        derivatives = [f0]
        ks = [terms.prod(f0, control)]
        for c, a_row in zip(tableau.c, tableau.a_lower):
            stage_y = _add(y0, _weighted_sum(a_row, ks))
            derivatives.append(terms.vf(t0 + float(c) * (t1 - t0), stage_y, args))
            ks.append(terms.prod(derivatives[-1], control))
        y1 = stage_y if tableau.ssal else _add(y0, _weighted_sum(tableau.b_sol, ks))
        y_error = _weighted_sum(tableau.b_error, ks)
        dense_info = dict(y0=y0, y1=y1, k=jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *ks))
        new_state = derivatives[-1] if tableau.fsal else None
        return y1, y_error, dense_info, new_state, dfx.RESULTS.successful
