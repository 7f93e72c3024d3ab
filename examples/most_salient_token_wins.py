"""Linear activation: V(t) = diag(s(t)) Δ, and the most salient token blows up first (J17–J19).

Integrates the linear-activation JoMA flow from V(0) = 0 on the §3.5 data model's salience Δ,
stops at a blow-up event, and compares with the closed form and the predicted blow-up time.
"""

import jax
import jax.numpy as jnp

import jomasim as js

jax.config.update("jax_enable_x64", True)  # jomasim computes in float64, as its CLI does

data = js.make_token_data(seed=0)
delta = data.salience()  # Δ = E[x gᵀ] at the start of training, (M_c, K)
row_norms = jnp.linalg.norm(delta, axis=1)
t_star = float(jnp.min(js.blowup_time(0.0, row_norms)))

ts = jnp.linspace(0.0, 1.5 * t_star, 200)
traj = js.simulate(js.SalienceFlow(delta), jnp.zeros_like(delta), ts, options=js.SolverOptions(blowup=20.0, rtol=1e-10, atol=1e-12))
closed = js.matrix_solution(ts, delta)
reached = traj.reached

print(traj.messages()[0], f"(predicted blow-up t* = {t_star:.4g})")
print("max |ODE − closed form| before the event:", float(jnp.max(jnp.abs(traj.ys[reached] - closed[reached]))))
print("most salient token (argmax ‖Δ_l‖):", int(jnp.argmax(row_norms)),
      "| token that blew up:", int(jnp.argmax(jnp.abs(traj.ys[int(reached.sum()) - 1]).max(axis=1))))
