"""Vector fields of the JoMA dynamics on the §3.5 block: the joint (W, z) flow and the reduced W flow.

Every field is an `equinox.Module` callable as `field(t, y, args)`, so it can be wrapped in
`diffrax.ODETerm` directly, and it can say what the attention is at a state (`logits`,
`attention`), which `Trajectory` uses for derived quantities.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp

from .._errors import check_choice, check_positive
from ..activation import ACTIVATIONS, get_activation
from ..attention import AbstractAttention, LogitInvariant, get_attention
from ..block import LAYER_NORM_EPSILON, block_hidden, block_loss, hidden_loss
from ..data import TokenData


class AbstractFlow(eqx.Module):
    """A JoMA vector field: `field(t, y, args) -> dy/dt`, plus the attention it implies at `y`."""

    @abc.abstractmethod
    def __call__(self, t, y, args):
        """The time derivative of the state `y`."""

    @abc.abstractmethod
    def logits(self, y) -> jax.Array:
        """The attention logits z at state `y`, shape `(M_c,)`."""

    @abc.abstractmethod
    def attention(self, y) -> jax.Array:
        """The attention distribution over tokens at state `y` (columns sum to one)."""

    def solved(self) -> "AbstractFlow":
        """The field the solver integrates: this one, or the same dynamics in coordinates with
        fewer numbers (`project`, `lift`)."""
        return self

    def project(self, y):
        """The state `y` in the coordinates of `solved()` (itself by default)."""
        return y

    def lift(self, p, y0):
        """The state of this field at the solved state `p`, for a solve started from `y0`."""
        return p


def _as_float(value) -> jax.Array:
    return jnp.asarray(value, dtype=jnp.result_type(float))


class _BlockFlow(AbstractFlow):
    """What the joint and the reduced flow share: the §3.5 block and its loss."""

    data: TokenData
    eta_w: jax.Array
    temperature: jax.Array
    attention_form: AbstractAttention
    activation: str = eqx.field(static=True)

    def loss(self, W: jax.Array, z: jax.Array) -> jax.Array:
        """The block's cross-entropy at weights `W` and logits `z`."""
        return block_loss(
            W, z, self.data, attention=self.attention_form, activation=self.activation, temperature=self.temperature
        )

    @abc.abstractmethod
    def weights(self, y) -> jax.Array:
        """The MLP weights W, `(d, K)`, at state `y`."""

    def projected_weights(self, y) -> jax.Array:
        """V = U_Cᵀ W, `(M_c, K)`: how much each hidden node reads each contextual token."""
        return self.data.U_c.T @ self.weights(y)

    def attention(self, y) -> jax.Array:
        """Attention distribution per class, `(M_c, K)`."""
        return self.attention_form.distribution(self.logits(y), self.data.X, self.temperature)

    def initial_weights(self, key: jax.Array, scale: float = 0.01) -> jax.Array:
        """W(0) ~ N(0, scale²) entry-wise, `(d, K)` (the authors use scale 0.01)."""
        return scale * jax.random.normal(key, (self.data.dim, self.data.n_classes))

    def projected_gradients(self, P: jax.Array, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The loss's gradients in projected coordinates, in closed form: with P = Uᵀ W the
        weights as the contextual tokens and the query read them (`(M_c + 1, K)`: V, then w_qᵀ),
        the hidden pre-activations are Bᵀ V + 1 w_qᵀ, their gradient G = (softmax(φ(h)) − I) ∘ φ'(h)
        / K, and ∂L/∂V = B G, ∂L/∂w_q = Gᵀ 1, ∂L/∂z the attention's pull-back of V Gᵀ. Equal to
        the autodiff gradient of `loss` projected by Uᵀ (tested to 1e-12).

        **Returns:**

        `(∂L/∂P, ∂L/∂z)`, shapes of `P` and `z`.
        """
        V, w_q = P[:-1], P[-1]
        B, pullback = jax.vjp(lambda logits: self.attention_form.weights(logits, self.data.X, self.temperature), z)
        hidden = B.T @ V + w_q
        activation = get_activation(self.activation)
        classes = hidden.shape[0]
        signal = (jax.nn.softmax(activation.fn(hidden), axis=1) - jnp.eye(classes)) * activation.derivative(hidden) / classes
        return jnp.concatenate([B @ signal, jnp.sum(signal, axis=0, keepdims=True)]), pullback(V @ signal.T)[0]

    def _project_weights(self, W: jax.Array) -> jax.Array:
        """P = Uᵀ W, `(M_c + 1, K)`: all of W that the loss sees and its gradient moves."""
        return self.data.U.T @ W

    def _lift_weights(self, P: jax.Array, W0: jax.Array) -> jax.Array:
        """W with projection P and W0's part outside the span of U (which never moves)."""
        return W0 + self.data.U @ (P - self.data.U.T @ W0)

    @abc.abstractmethod
    def projected_rate(self, t, p):
        """The field in projected coordinates (`solved()`'s state `p`)."""

    @abc.abstractmethod
    def projected_logits(self, p) -> jax.Array:
        """The logits z at the projected state `p`."""

    def solved(self) -> "AbstractFlow":
        """The same dynamics in projected coordinates: the gradient of W always lies in the span of
        the embeddings U, so W's part outside it never moves and never reaches the loss, and the
        solver integrates Uᵀ W ((M_c + 1) × K numbers instead of d × K), by the closed form."""
        return _ProjectedBlockFlow(self)


class _ProjectedBlockFlow(AbstractFlow):
    """A block flow in projected coordinates (`_BlockFlow.solved`)."""

    flow: _BlockFlow

    def __call__(self, t, p, args):
        return self.flow.projected_rate(t, p)

    def logits(self, p) -> jax.Array:
        return self.flow.projected_logits(p)

    def attention(self, p) -> jax.Array:
        flow = self.flow
        return flow.attention_form.distribution(self.logits(p), flow.data.X, flow.temperature)


def _check_block_options(activation: str, eta_w, temperature) -> None:
    check_choice("activation", activation, ACTIVATIONS)
    check_positive("eta_w", eta_w)
    check_positive("temperature", temperature)


class JointFlow(_BlockFlow):
    """The joint gradient flow of MLP weights and attention logits (J5–J8).

        Ẇ = −η_w ∂L/∂W,    ż = −η_z ∂L/∂z,    state y = (W, z)

    with L the block's cross-entropy (`jomasim.block.block_loss`). Full-batch gradient descent
    with rates (η_w, η_z) for k steps is the explicit-Euler discretisation of this flow with step 1
    up to t = k; equivalently the flow with rates (η_w/η, η_z/η) at t = η·k, for any η.
    """

    eta_z: jax.Array

    def __init__(
        self,
        data: TokenData,
        *,
        attention: "str | AbstractAttention" = "softmax",
        activation: str = "linear",
        eta_w: float = 1.0,
        eta_z: float = 1.0,
        temperature: float = 1.0,
    ):
        """**Arguments:**

        - `data`: the token data (`make_token_data`).
        - `attention`: the attention form (`jomasim.attention`), or its name: `"linear"`,
          `"exp"` or `"softmax"`.
        - `activation`: `"linear"`, `"relu"`, `"silu"` or `"gelu"`.
        - `eta_w`, `eta_z`: learning rates (> 0) of W and z.
        - `temperature`: T > 0; the logits are divided by T.
        """
        _check_block_options(activation, eta_w, temperature)
        check_positive("eta_z", eta_z)
        self.data = data
        self.eta_w = _as_float(eta_w)
        self.eta_z = _as_float(eta_z)
        self.temperature = _as_float(temperature)
        self.attention_form = get_attention(attention)
        self.activation = activation

    def __call__(self, t, y, args):
        W, z = y
        grad_W, grad_z = jax.grad(self.loss, argnums=(0, 1))(W, z)
        return -self.eta_w * grad_W, -self.eta_z * grad_z

    def projected_rate(self, t, p):
        grad_P, grad_z = self.projected_gradients(*p)
        return -self.eta_w * grad_P, -self.eta_z * grad_z

    def projected_logits(self, p) -> jax.Array:
        return p[1]

    def project(self, y):
        return self._project_weights(y[0]), y[1]

    def lift(self, p, y0):
        return self._lift_weights(p[0], y0[0]), p[1]

    def weights(self, y) -> jax.Array:
        return y[0]

    def logits(self, y) -> jax.Array:
        return y[1]

    def initial_state(self, key: jax.Array, scale: float = 0.01) -> tuple[jax.Array, jax.Array]:
        """(W(0), z(0)) with entries i.i.d. N(0, scale²), as the authors' Fig. 2 code."""
        weight_key, logit_key = jax.random.split(key)
        return self.initial_weights(weight_key, scale), scale * jax.random.normal(logit_key, (self.data.n_tokens,))

    def invariant(self, y0) -> LogitInvariant:
        """Theorem 1 for this flow, with the constant fixed so that it is exact at `y0`.

        For a form that holds a mean attention b̄ fixed (softmax) it is the form's, from the token
        frequencies (for softmax the mean frequency x̄, the attention at uniform logits, as in the
        authors' code).
        """
        form = self.attention_form
        return LogitInvariant.from_initial(
            form,
            self.projected_weights(y0),
            self.logits(y0),
            lr_ratio=self.eta_z / self.eta_w,
            temperature=self.temperature,
            b_bar=form.mean_attention(self.data.X) if form.holds_mean_attention else None,
        )


class ReducedFlow(_BlockFlow):
    """JoMA's modified MLP dynamics with attention integrated out (J12, J13, J13a, J13b).

        Ẇ = −η_w ∂L/∂W (W, z = ẑ(U_Cᵀ W)),    state y = W

    ẑ is Theorem 1's prediction (`LogitInvariant`); it is held fixed while differentiating, so the
    field is the MLP gradient with the attention that the invariant implies. Its projection
    V̇ = U_Cᵀ Ẇ is (J13) for exp attention, (J13a) for linear and (J13b) for softmax.

    With linear attention ẑ = branch · √(κ'Σv² + c) follows the sign of z(0); it matches the joint
    flow only while no logit crosses zero, which c > 0 (|z(0)| large enough) guarantees.
    """

    invariant: LogitInvariant

    def __init__(
        self,
        data: TokenData,
        invariant: LogitInvariant,
        *,
        activation: str = "linear",
        eta_w: float = 1.0,
    ):
        """**Arguments:**

        - `data`: the token data.
        - `invariant`: Theorem 1 (its kind, temperature and η_z/η_w are the flow's).
        - `activation`: the MLP activation name.
        - `eta_w`: learning rate of W (> 0).
        """
        _check_block_options(activation, eta_w, invariant.temperature)
        self.data = data
        self.invariant = invariant
        self.eta_w = _as_float(eta_w)
        self.temperature = invariant.temperature
        self.attention_form = invariant.attention
        self.activation = activation

    @classmethod
    def from_joint(cls, joint: JointFlow, y0) -> "ReducedFlow":
        """The reduced flow of `joint` started from the joint state `y0` (its W(0) is `y0[0]`)."""
        return cls(joint.data, joint.invariant(y0), activation=joint.activation, eta_w=joint.eta_w)

    def __call__(self, t, W, args):
        return -self.eta_w * jax.grad(self.loss)(W, self.logits(W))

    def projected_rate(self, t, P):
        return -self.eta_w * self.projected_gradients(P, self.projected_logits(P))[0]

    def projected_logits(self, P) -> jax.Array:
        return self.invariant.predict(P[:-1])

    def project(self, y):
        return self._project_weights(y)

    def lift(self, p, y0):
        return self._lift_weights(p, y0)

    def weights(self, y) -> jax.Array:
        return y

    def logits(self, y) -> jax.Array:
        return self.invariant.predict(self.projected_weights(y))


class _InvariantRateFlow(JointFlow):
    """A flow of (W, z) whose logits follow the differential form of Theorem 1: Ẇ = −η_w ∂L/∂W (W, z)
    and ż = d/dt ẑ(V) along V̇ = U_Cᵀ Ẇ, with the invariant made exact at the current state. The
    subclasses say which rate ratio and which mean attention the invariant holds."""

    def ratio(self, t) -> jax.Array:
        """The rate ratio η_z/η_w the invariant holds at time `t`."""
        return self.eta_z / self.eta_w

    @abc.abstractmethod
    def held_mean_attention(self, z: jax.Array) -> jax.Array | None:
        """The mean attention b̄ the invariant holds at logits `z` (`None` for forms without one)."""

    def precondition(self, t, rate: jax.Array) -> jax.Array:
        """The logits' rate at time `t` from the invariant's rate d/dt ẑ(V): itself (P = I)."""
        return rate

    def precondition_weights(self, t, rate: jax.Array) -> jax.Array:
        """The MLP weights' rate at time `t`, `(d, K)`, from gradient flow's −η_w ∂L/∂W: itself."""
        return rate

    def precondition_projected_weights(self, t, rate: jax.Array) -> jax.Array:
        """`precondition_weights` in projected coordinates (`(M_c + 1, K)`, `solved()`'s): itself."""
        return rate

    def closure_rate(self, hidden: jax.Array, z: jax.Array) -> jax.Array:
        """A rate the logits get besides the invariant's, at the hidden pre-activations `hidden`
        `(K, K)` and logits `z`, before the preconditioner: none."""
        return jnp.zeros_like(z)

    def _logit_rate(self, t, V: jax.Array, z: jax.Array, V_rate: jax.Array, hidden: jax.Array) -> jax.Array:
        """ż = P(t) (d/dt ẑ(V) + the closure's rate) along V̇, with the invariant made exact at (V, z)."""
        local = LogitInvariant.from_initial(self.attention_form, V, z, lr_ratio=self.ratio(t), temperature=self.temperature,
                                            b_bar=self.held_mean_attention(z))
        return self.precondition(t, jax.jvp(local.predict, (V,), (V_rate,))[1] + self.closure_rate(hidden, z))

    # the invariant's rate is taken along gradient flow's move of the MLP, whatever moves it
    # (JOMA_MATH §10.4: with Adam's D_W the move is D_W⁻¹ of it and Theorem 1 weights by D_W)
    def __call__(self, t, y, args):
        W, z = y
        W_rate = -self.eta_w * jax.grad(self.loss)(W, z)
        hidden = block_hidden(W, z, self.data, attention=self.attention_form, temperature=self.temperature)
        return (self.precondition_weights(t, W_rate),
                self._logit_rate(t, self.data.U_c.T @ W, z, self.data.U_c.T @ W_rate, hidden))

    def projected_rate(self, t, p):
        P, z = p
        P_rate = -self.eta_w * self.projected_gradients(P, z)[0]
        hidden = self.attention_form.weights(z, self.data.X, self.temperature).T @ P[:-1] + P[-1]
        return self.precondition_projected_weights(t, P_rate), self._logit_rate(t, P[:-1], z, P_rate[:-1], hidden)


class TrackedMeanFlow(_InvariantRateFlow):
    """Theorem 1 with only its factorisation assumption: the logits follow the differential form of
    the invariant with the *current* mean attention b̄(z) instead of a constant one.

        Ẇ = −η_w ∂L/∂W (W, z),    ż = d/dt ẑ(V) with b̄ held at b̄(z) = mean over classes of b,
        state y = (W, z)

    For softmax attention (J11) ż = (η_z / (η_w T)) Σ_k (v_k ∘ v̇_k − b̄(z) (v_kᵀ v̇_k)) with
    V̇ = U_Cᵀ Ẇ; for exp and linear attention, whose invariants are exact and hold no mean attention,
    it is the joint flow itself. Against the joint flow it misses only the factorisation gap of
    `jomasim.assumptions`; against `ReducedFlow` it no longer holds b̄ at x̄. Built like
    `JointFlow` (or with `from_joint`).
    """

    @classmethod
    def from_joint(cls, joint: JointFlow) -> "TrackedMeanFlow":
        """The tracked closure of `joint`: its data, attention, activation, rates and temperature."""
        return cls(joint.data, attention=joint.attention_form, activation=joint.activation, eta_w=joint.eta_w,
                   eta_z=joint.eta_z, temperature=joint.temperature)

    def held_mean_attention(self, z):
        form = self.attention_form
        return form.mean_attention(form.weights(z, self.data.X, self.temperature)) if form.holds_mean_attention else None


def _paper_mean_attention(flow: _InvariantRateFlow) -> jax.Array | None:
    """The b̄ that J11 holds: the form's mean attention of the token frequencies (x̄ for softmax)."""
    form = flow.attention_form
    return form.mean_attention(flow.data.X) if form.holds_mean_attention else None


class ScheduledReducedFlow(_InvariantRateFlow):
    """The reduced flow (J11's b̄ held at x̄) with a rate ratio ρ(t) that changes over time,
    piecewise constant between knots: with a changing ratio Theorem 1's z is no function of V, so
    z is a state and follows the invariant's differential form,

        Ẇ = −η_w ∂L/∂W (W, z),    ż = d/dt ẑ(V) at ratio ρ(t),    state y = (W, z).

    With one piece it is `ReducedFlow` (z = ẑ(V) along it). What `jomasim fit --knots` fits for
    runs whose attention rate changes over training.

    **Fields** (besides `JointFlow`'s; its `eta_z` is `ratios[0] · eta_w`):

    - `ratios`: ρ on each piece, `(P,)`.
    - `knots`: the times where the pieces meet, increasing, `(P − 1,)`.
    """

    ratios: jax.Array
    knots: jax.Array

    def __init__(self, data: TokenData, ratios, knots, *, attention: "str | AbstractAttention" = "softmax",
                 activation: str = "linear", eta_w: float = 1.0, temperature: float = 1.0):
        """**Arguments:** `data`, `attention`, `activation`, `eta_w`, `temperature` as `JointFlow`'s;
        `ratios` and `knots` as the fields."""
        ratios = _as_float(ratios)
        super().__init__(data, attention=attention, activation=activation, eta_w=eta_w, eta_z=ratios[0] * eta_w,
                         temperature=temperature)
        self.ratios = ratios
        self.knots = _as_float(knots)

    def ratio(self, t):
        return self.ratios[jnp.searchsorted(self.knots, t, side="right")]

    def held_mean_attention(self, z):
        return _paper_mean_attention(self)


class PreconditionedReducedFlow(_InvariantRateFlow):
    """The reduced flow (J11's b̄ held at x̄) whose logits move through a measured preconditioner
    P(t), Theorem 1 in differential form for learned W_Q, W_K (JOMA_MATH §10.2), and whose MLP
    weights may move through a measured diagonal one D_W⁻¹(t) (Adam's, §10.4):

        Ẇ = −η_w D_W⁻¹(t) ∘ ∂L/∂W (W, z),    ż = P(t) d/dt ẑ(V) at ratio η_z/η_w along
        gradient flow's V̇ = −η_w U_Cᵀ ∂L/∂W,    state y = (W, z).

    The preconditioners are given at `times` (a Transformer's probes at its saves) and interpolated
    linearly between them (held at the ends). With P = r I (and no D_W) it is
    `ScheduledReducedFlow` at ratio r η_z/η_w; with P = I, `ReducedFlow`. With Adam's D⁻¹ on both
    sides it is Adam without momentum: with β₂ → 0, a sign flow.

    With `scale_path` the logits also get the rate of the scale path of a LayerNorm on the MLP's
    input (JOMA_MATH §10.3), from the flow's own state: the LayerNorm divides the MLP's input
    f_y = U_C b_y + u_q of class y by its spread σ_y over the d entries (LayerNorm's, with its ε), so moving z changes every
    pre-activation h_yk by −h_yk ∂log σ_y/∂z, and

        ż ⊃ P(t) η_z Σ_y (Σ_k g_yk h_yk) ∂log σ_y/∂z,    g_yk = ∂L/∂h_yk,

    a brake on sparsification that grows with the margins Σ_k g_yk h_yk (h is the flow's, which
    stands for the LayerNorm's centred and scaled one).

    **Fields** (besides `JointFlow`'s):

    - `preconditioners`: P at each time, `(n, M_c, M_c)`.
    - `times`: increasing times, `(n,)`, on the flow's clock.
    - `weight_preconditioners`: D_W⁻¹ at each time, `(n, d, K)`, or `None` (gradient flow's MLP).
    - `scale_path`: whether the logits get the scale path's rate.
    """

    preconditioners: jax.Array
    times: jax.Array
    weight_preconditioners: jax.Array | None
    scale_path: bool = eqx.field(static=True)

    def __init__(self, data: TokenData, preconditioners, times, *, attention: "str | AbstractAttention" = "softmax",
                 activation: str = "linear", eta_w: float = 1.0, eta_z: float = 1.0, temperature: float = 1.0,
                 weight_preconditioners=None, scale_path: bool = False):
        """**Arguments:** `data`, `attention`, `activation`, `eta_w`, `eta_z`, `temperature` as
        `JointFlow`'s; `preconditioners`, `times`, `weight_preconditioners` and `scale_path` as the
        fields."""
        super().__init__(data, attention=attention, activation=activation, eta_w=eta_w, eta_z=eta_z,
                         temperature=temperature)
        self.preconditioners = _as_float(preconditioners)
        self.times = _as_float(times)
        self.weight_preconditioners = None if weight_preconditioners is None else _as_float(weight_preconditioners)
        self.scale_path = scale_path

    @classmethod
    def from_joint(cls, joint: JointFlow, preconditioners, times, weight_preconditioners=None,
                   scale_path: bool = False) -> "PreconditionedReducedFlow":
        """The preconditioned flow of `joint` (its data, attention, activation, rates, temperature)."""
        return cls(joint.data, preconditioners, times, attention=joint.attention_form, activation=joint.activation,
                   eta_w=joint.eta_w, eta_z=joint.eta_z, temperature=joint.temperature,
                   weight_preconditioners=weight_preconditioners, scale_path=scale_path)

    def closure_rate(self, hidden, z):
        if not self.scale_path:
            return jnp.zeros_like(z)
        data = self.data

        def log_spread(logits):
            inputs = data.U_c @ self.attention_form.weights(logits, data.X, self.temperature) + data.u_q[:, None]
            return jnp.log(jnp.var(inputs, axis=0) + LAYER_NORM_EPSILON) / 2

        margins = jnp.sum(jax.grad(hidden_loss)(hidden, self.activation) * hidden, axis=1)
        return self.eta_z * jax.vjp(log_spread, z)[1](margins)[0]

    def _interpolated(self, values: jax.Array, t) -> jax.Array:
        """`values` given at `times`, at `t`: linear between the two times around it."""
        times = self.times
        index = jnp.clip(jnp.searchsorted(times, t, side="right") - 1, 0, times.shape[0] - 2)
        width = times[index + 1] - times[index]
        weight = jnp.clip((t - times[index]) / jnp.where(width > 0, width, 1.0), 0.0, 1.0)
        return (1 - weight) * values[index] + weight * values[index + 1]

    def preconditioner(self, t) -> jax.Array:
        """P(t), `(M_c, M_c)`."""
        return self._interpolated(self.preconditioners, t)

    def precondition(self, t, rate):
        return self.preconditioner(t) @ rate

    def precondition_weights(self, t, rate):
        if self.weight_preconditioners is None:
            return rate
        return self._interpolated(self.weight_preconditioners, t) * rate

    def precondition_projected_weights(self, t, rate):
        # D_W is diagonal in W's coordinates: through U and back (U @ rate is W's rate, as the
        # gradient lies in U's span)
        if self.weight_preconditioners is None:
            return rate
        U = self.data.U
        return U.T @ self.precondition_weights(t, U @ rate)

    def held_mean_attention(self, z):
        return _paper_mean_attention(self)
