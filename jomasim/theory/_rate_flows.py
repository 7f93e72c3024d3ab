"""Flows whose logits follow Theorem 1 in differential form: one final flow, three strategies.

`InvariantRateFlow` moves the MLP weights by gradient flow and the logits at the rate the invariant
implies, made exact at the current state. What differs between the closures is which rate ratio
the invariant holds (`AbstractRateRatio`), which mean attention b̄ (`AbstractHeldMean`) and how
measured preconditioners drive the rates (`AbstractDrive`); each is a strategy object, and the
named closures (`TrackedMeanFlow`, `ScheduledReducedFlow`, `PreconditionedReducedFlow`) are
constructors that choose them. A flow built by one of them is an instance of that name
(`isinstance(flow, ScheduledReducedFlow)` asks for its strategies).
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp

from ..activation import AbstractActivation
from ..attention import AbstractAttention, LogitInvariant
from ..block import LAYER_NORM_EPSILON, block_hidden, hidden_loss
from ..data import TokenData
from ._flows import AbstractWeightsAndLogitsFlow, JointFlow, as_float


class AbstractRateRatio(eqx.Module):
    """The rate ratio η_z/η_w that the invariant holds, over time."""

    @abc.abstractmethod
    def __call__(self, flow: "InvariantRateFlow", t) -> jax.Array:
        """ρ at time `t` for `flow`."""


class FlowRatio(AbstractRateRatio):
    """The flow's own rates: ρ = η_z/η_w at every time."""

    def __call__(self, flow, t):
        return flow.eta_z / flow.eta_w


class PiecewiseRatio(AbstractRateRatio):
    """ρ(t) piecewise constant between knots.

    **Fields:**

    - `ratios`: ρ on each piece, `(P,)`.
    - `knots`: the times where the pieces meet, increasing, `(P − 1,)`.
    """

    ratios: jax.Array
    knots: jax.Array

    def __call__(self, flow, t):
        return self.ratios[jnp.searchsorted(self.knots, t, side="right")]


class AbstractHeldMean(eqx.Module):
    """The mean attention b̄ the invariant holds, at the current logits."""

    @abc.abstractmethod
    def __call__(self, flow: "InvariantRateFlow", z: jax.Array) -> jax.Array | None:
        """b̄ at logits `z` (`None` for attention forms that hold none)."""


class CurrentMean(AbstractHeldMean):
    """The current mean attention b̄(z), the mean over classes of the attention at `z`."""

    def __call__(self, flow, z):
        form = flow.attention_form
        return form.mean_attention(form.weights(z, flow.data.X, flow.temperature)) if form.holds_mean_attention else None


class FrequencyMean(AbstractHeldMean):
    """The b̄ that J11 holds: the form's mean attention of the token frequencies (x̄ for softmax)."""

    def __call__(self, flow, z):
        form = flow.attention_form
        return form.mean_attention(flow.data.X) if form.holds_mean_attention else None


class AbstractDrive(eqx.Module):
    """How the rates reach the state: the logits' preconditioner P(t) on the invariant's rate and the
    MLP weights' diagonal one D_W⁻¹(t) on gradient flow's."""

    @abc.abstractmethod
    def preconditioner(self, t) -> jax.Array | None:
        """P(t), `(M_c, M_c)`, or `None` where it is the identity."""

    @abc.abstractmethod
    def logits(self, t, rate: jax.Array) -> jax.Array:
        """The logits' rate at time `t` from the invariant's rate."""

    @abc.abstractmethod
    def weights(self, t, rate: jax.Array) -> jax.Array:
        """The MLP weights' rate at time `t`, `(d, K)`, from gradient flow's."""

    @abc.abstractmethod
    def projected_weights(self, t, rate: jax.Array, U: jax.Array) -> jax.Array:
        """`weights` in projected coordinates (`(M_c + 1, K)`, P = Uᵀ W for embeddings `U`)."""


class GradientDrive(AbstractDrive):
    """No preconditioner: the logits at the invariant's rate, the weights by gradient flow."""

    def preconditioner(self, t):
        return None

    def logits(self, t, rate):
        return rate

    def weights(self, t, rate):
        return rate

    def projected_weights(self, t, rate, U):
        return rate


class MeasuredDrive(AbstractDrive):
    """Measured preconditioners, given at `times` and interpolated linearly between them (held at
    the ends): P(t) on the logits (a Transformer's W_Q, W_K, or Adam's), and optionally D_W⁻¹(t) on
    the MLP weights (Adam's).

    **Fields:**

    - `preconditioners`: P at each time, `(n, M_c, M_c)`.
    - `times`: increasing times, `(n,)`, on the flow's clock.
    - `weight_preconditioners`: D_W⁻¹ at each time, `(n, d, K)`, or `None` (gradient flow's MLP).
    """

    preconditioners: jax.Array
    times: jax.Array
    weight_preconditioners: jax.Array | None

    def _interpolated(self, values: jax.Array, t) -> jax.Array:
        """`values` given at `times`, at `t`: linear between the two times around it."""
        times = self.times
        index = jnp.clip(jnp.searchsorted(times, t, side="right") - 1, 0, times.shape[0] - 2)
        width = times[index + 1] - times[index]
        weight = jnp.clip((t - times[index]) / jnp.where(width > 0, width, 1.0), 0.0, 1.0)
        return (1 - weight) * values[index] + weight * values[index + 1]

    def preconditioner(self, t):
        return self._interpolated(self.preconditioners, t)

    def logits(self, t, rate):
        return self.preconditioner(t) @ rate

    def weights(self, t, rate):
        if self.weight_preconditioners is None:
            return rate
        return self._interpolated(self.weight_preconditioners, t) * rate

    def projected_weights(self, t, rate, U):
        # D_W is diagonal in W's coordinates: through U and back (U @ rate is W's rate, as the
        # gradient lies in U's span)
        if self.weight_preconditioners is None:
            return rate
        return U.T @ self.weights(t, U @ rate)


class InvariantRateFlow(AbstractWeightsAndLogitsFlow):
    """A flow of (W, z) whose logits follow the differential form of Theorem 1, with the invariant
    made exact at the current state:

        Ẇ = −η_w D_W⁻¹(t) ∘ ∂L/∂W (W, z),    ż = P(t) (d/dt ẑ(V) at ratio ρ(t) with b̄ held
        + the scale path's rate) along gradient flow's V̇ = −η_w U_Cᵀ ∂L/∂W,    state y = (W, z).

    The invariant's rate is taken along gradient flow's move of the MLP, whatever moves it
    (JOMA_MATH §10.4: with Adam's D_W the move is D_W⁻¹ of it and Theorem 1 weights by D_W).

    With `scale_path` the logits also get the rate of the scale path of a LayerNorm on the MLP's
    input (JOMA_MATH §10.3), from the flow's own state: the LayerNorm divides the MLP's input
    f_y = U_C b_y + u_q of class y by its spread σ_y over the d entries (LayerNorm's, with its ε),
    so moving z changes every pre-activation h_yk by −h_yk ∂log σ_y/∂z, and

        ż ⊃ P(t) η_z Σ_y (Σ_k g_yk h_yk) ∂log σ_y/∂z,    g_yk = ∂L/∂h_yk,

    a brake on sparsification that grows with the margins Σ_k g_yk h_yk (h is the flow's, which
    stands for the LayerNorm's centred and scaled one).

    **Fields** (besides `JointFlow`'s):

    - `rate_ratio`: the ratio ρ(t) the invariant holds (`FlowRatio`, `PiecewiseRatio`).
    - `held_mean`: the mean attention b̄ it holds (`CurrentMean`, `FrequencyMean`).
    - `drive`: the preconditioners of the rates (`GradientDrive`, `MeasuredDrive`).
    - `scale_path`: whether the logits get the scale path's rate.

    Usually built by `TrackedMeanFlow`, `ScheduledReducedFlow` or `PreconditionedReducedFlow`.
    """

    data: TokenData
    eta_w: jax.Array
    eta_z: jax.Array
    temperature: jax.Array
    attention_form: AbstractAttention
    activation: AbstractActivation
    rate_ratio: AbstractRateRatio
    held_mean: AbstractHeldMean
    drive: AbstractDrive
    scale_path: bool = eqx.field(static=True)

    def __init__(self, data: TokenData, rate_ratio: AbstractRateRatio, held_mean: AbstractHeldMean,
                 drive: AbstractDrive, *, attention: "str | AbstractAttention" = "softmax",
                 activation: "str | AbstractActivation" = "linear", eta_w: float = 1.0, eta_z: float = 1.0, temperature: float = 1.0,
                 scale_path: bool = False):
        """**Arguments:** `data`, `attention`, `activation`, `eta_w`, `eta_z`, `temperature` as
        `JointFlow`'s; `rate_ratio`, `held_mean`, `drive` and `scale_path` as the fields."""
        self._set_block(data, attention, activation, eta_w, eta_z, temperature)
        self.rate_ratio = rate_ratio
        self.held_mean = held_mean
        self.drive = drive
        self.scale_path = scale_path

    def ratio(self, t) -> jax.Array:
        """The rate ratio η_z/η_w the invariant holds at time `t`."""
        return self.rate_ratio(self, t)

    def preconditioner(self, t) -> jax.Array | None:
        """The logits' preconditioner P(t), `(M_c, M_c)` (`None`: the identity)."""
        return self.drive.preconditioner(t)

    def closure_rate(self, hidden: jax.Array, z: jax.Array) -> jax.Array:
        """The rate the logits get besides the invariant's, at the hidden pre-activations `hidden`
        `(K, K)` and logits `z`, before the preconditioner: the scale path's with `scale_path`,
        else none."""
        if not self.scale_path:
            return jnp.zeros_like(z)
        data = self.data

        def log_spread(logits):
            inputs = data.U_c @ self.attention_form.weights(logits, data.X, self.temperature) + data.u_q[:, None]
            return jnp.log(jnp.var(inputs, axis=0) + LAYER_NORM_EPSILON) / 2

        margins = jnp.sum(jax.grad(hidden_loss)(hidden, self.activation) * hidden, axis=1)
        return self.eta_z * jax.vjp(log_spread, z)[1](margins)[0]

    def _logit_rate(self, t, V: jax.Array, z: jax.Array, V_rate: jax.Array, hidden: jax.Array) -> jax.Array:
        """ż = P(t) (d/dt ẑ(V) + the closure's rate) along V̇, with the invariant made exact at (V, z)."""
        local = LogitInvariant.from_initial(self.attention_form, V, z, lr_ratio=self.ratio(t), temperature=self.temperature,
                                            b_bar=self.held_mean(self, z))
        return self.drive.logits(t, jax.jvp(local.predict, (V,), (V_rate,))[1] + self.closure_rate(hidden, z))

    def __call__(self, t, y, args):
        W, z = y
        W_rate = -self.eta_w * jax.grad(self.loss)(W, z)
        hidden = block_hidden(W, z, self.data, attention=self.attention_form, temperature=self.temperature)
        return (self.drive.weights(t, W_rate),
                self._logit_rate(t, self.data.U_c.T @ W, z, self.data.U_c.T @ W_rate, hidden))

    def projected_rate(self, t, p):
        P, z = p
        P_rate = -self.eta_w * self.projected_gradients(P, z)[0]
        hidden = self.attention_form.weights(z, self.data.X, self.temperature).T @ P[:-1] + P[-1]
        return self.drive.projected_weights(t, P_rate, self.data.U), self._logit_rate(t, P[:-1], z, P_rate[:-1], hidden)


class _Closure(type):
    """The type of the named closures: calling one builds an `InvariantRateFlow` with its
    strategies (its `__new__`), and a flow is an instance of it when it holds strategies of the
    kinds its `strategies` names (rate ratio, held mean, drive)."""

    strategies: tuple[type[AbstractRateRatio], type[AbstractHeldMean], type[AbstractDrive]]

    def __instancecheck__(cls, instance) -> bool:
        return isinstance(instance, InvariantRateFlow) and all(
            isinstance(part, kind) for part, kind in zip((instance.rate_ratio, instance.held_mean, instance.drive),
                                                         cls.strategies))


class TrackedMeanFlow(metaclass=_Closure):
    """Theorem 1 with only its factorisation assumption: the logits follow the differential form of
    the invariant with the *current* mean attention b̄(z) instead of a constant one.

        Ẇ = −η_w ∂L/∂W (W, z),    ż = d/dt ẑ(V) with b̄ held at b̄(z) = mean over classes of b,
        state y = (W, z)

    For softmax attention (J11) ż = (η_z / (η_w T)) Σ_k (v_k ∘ v̇_k − b̄(z) (v_kᵀ v̇_k)) with
    V̇ = U_Cᵀ Ẇ; for exp and linear attention, whose invariants are exact and hold no mean attention,
    it is the joint flow itself. Against the joint flow it misses only the factorisation gap of
    `jomasim.assumptions`; against `ReducedFlow` it no longer holds b̄ at x̄. Built as `JointFlow`
    (or with `from_joint`): an `InvariantRateFlow` with `FlowRatio` and `CurrentMean`.
    """

    strategies = (FlowRatio, CurrentMean, GradientDrive)

    def __new__(cls, data: TokenData, *, attention: "str | AbstractAttention" = "softmax",
                activation: "str | AbstractActivation" = "linear", eta_w: float = 1.0, eta_z: float = 1.0,
                temperature: float = 1.0) -> InvariantRateFlow:
        return InvariantRateFlow(data, FlowRatio(), CurrentMean(), GradientDrive(), attention=attention, activation=activation,
                                 eta_w=eta_w, eta_z=eta_z, temperature=temperature)

    @classmethod
    def from_joint(cls, joint: JointFlow) -> InvariantRateFlow:
        """The tracked closure of `joint`: its data, attention, activation, rates and temperature."""
        return cls(joint.data, attention=joint.attention_form, activation=joint.activation, eta_w=joint.eta_w,
                   eta_z=joint.eta_z, temperature=joint.temperature)


class ScheduledReducedFlow(metaclass=_Closure):
    """The reduced flow (J11's b̄ held at x̄) with a rate ratio ρ(t) that changes over time,
    piecewise constant between knots: with a changing ratio Theorem 1's z is no function of V, so
    z is a state and follows the invariant's differential form,

        Ẇ = −η_w ∂L/∂W (W, z),    ż = d/dt ẑ(V) at ratio ρ(t),    state y = (W, z).

    With one piece it is `ReducedFlow` (z = ẑ(V) along it). What `jomasim fit --knots` fits for
    runs whose attention rate changes over training. An `InvariantRateFlow` with `PiecewiseRatio`
    (`ratios`, `knots`) and `FrequencyMean`; its `eta_z` is `ratios[0] · eta_w`.
    """

    strategies = (PiecewiseRatio, FrequencyMean, GradientDrive)

    def __new__(cls, data: TokenData, ratios, knots, *, attention: "str | AbstractAttention" = "softmax",
                activation: "str | AbstractActivation" = "linear", eta_w: float = 1.0, temperature: float = 1.0) -> InvariantRateFlow:
        ratios = as_float(ratios)
        return InvariantRateFlow(data, PiecewiseRatio(ratios, as_float(knots)), FrequencyMean(), GradientDrive(),
                                 attention=attention, activation=activation, eta_w=eta_w, eta_z=ratios[0] * eta_w, temperature=temperature)


class PreconditionedReducedFlow(metaclass=_Closure):
    """The reduced flow (J11's b̄ held at x̄) whose logits move through a measured preconditioner
    P(t), Theorem 1 in differential form for learned W_Q, W_K (JOMA_MATH §10.2), and whose MLP
    weights may move through a measured diagonal one D_W⁻¹(t) (Adam's, §10.4):

        Ẇ = −η_w D_W⁻¹(t) ∘ ∂L/∂W (W, z),    ż = P(t) d/dt ẑ(V) at ratio η_z/η_w along
        gradient flow's V̇ = −η_w U_Cᵀ ∂L/∂W,    state y = (W, z).

    With P = r I (and no D_W) it is `ScheduledReducedFlow` at ratio r η_z/η_w; with P = I,
    `ReducedFlow`. With Adam's D⁻¹ on both sides it is Adam without momentum: with β₂ → 0, a sign
    flow. With `scale_path`, also the LayerNorm's scale path (`InvariantRateFlow`). An
    `InvariantRateFlow` with `FlowRatio`, `FrequencyMean` and `MeasuredDrive` (`preconditioners`,
    `times`, `weight_preconditioners`).
    """

    strategies = (FlowRatio, FrequencyMean, MeasuredDrive)

    def __new__(cls, data: TokenData, preconditioners, times, *, attention: "str | AbstractAttention" = "softmax",
                activation: "str | AbstractActivation" = "linear", eta_w: float = 1.0, eta_z: float = 1.0, temperature: float = 1.0,
                weight_preconditioners=None, scale_path: bool = False) -> InvariantRateFlow:
        drive = MeasuredDrive(as_float(preconditioners), as_float(times),
                              None if weight_preconditioners is None else as_float(weight_preconditioners))
        return InvariantRateFlow(data, FlowRatio(), FrequencyMean(), drive, attention=attention, activation=activation,
                                 eta_w=eta_w, eta_z=eta_z, temperature=temperature, scale_path=scale_path)

    @classmethod
    def from_joint(cls, joint: JointFlow, preconditioners, times, weight_preconditioners=None,
                   scale_path: bool = False) -> InvariantRateFlow:
        """The preconditioned flow of `joint` (its data, attention, activation, rates, temperature)."""
        return cls(joint.data, preconditioners, times, attention=joint.attention_form, activation=joint.activation,
                   eta_w=joint.eta_w, eta_z=joint.eta_z, temperature=joint.temperature,
                   weight_preconditioners=weight_preconditioners, scale_path=scale_path)
