"""Vector fields of the JoMA dynamics on the §3.5 block: the joint (W, z) flow and the reduced W flow.

Every field is an `equinox.Module` callable as `field(t, y, args)`, so it can be wrapped in
`diffrax.ODETerm` directly, and it can say what the attention is at a state (`logits`,
`attention`), which `Trajectory` uses for derived quantities.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp

from .._errors import check_positive
from ..activation import AbstractActivation, get_activation
from ..attention import AbstractAttention, LogitInvariant, get_attention
from ..block import block_loss
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


class _BlockFlow(AbstractFlow):
    """What every flow of the §3.5 block shares: the block, its loss and its projected
    coordinates. Abstract: each final flow declares these fields itself."""

    data: eqx.AbstractVar[TokenData]
    eta_w: eqx.AbstractVar[jax.Array]
    temperature: eqx.AbstractVar[jax.Array]
    attention_form: eqx.AbstractVar[AbstractAttention]
    activation: eqx.AbstractVar[AbstractActivation]

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
        phi, classes = self.activation, hidden.shape[0]
        signal = (jax.nn.softmax(phi.fn(hidden), axis=1) - jnp.eye(classes)) * phi.derivative(hidden) / classes
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


def check_block_options(eta_w, temperature) -> None:
    """One clear error for an η_w or a temperature a block flow cannot take."""
    check_positive("eta_w", eta_w)
    check_positive("temperature", temperature)


def as_float(value) -> jax.Array:
    """`value` as an array of JAX's default float type (a flow's rates and temperature)."""
    return jnp.asarray(value, dtype=jnp.result_type(float))


class AbstractWeightsAndLogitsFlow(_BlockFlow):
    """A block flow whose state is the MLP weights and the attention logits, y = (W, z), moved at
    rates (η_w, η_z): the joint flow, and the flows whose logits follow Theorem 1's rate."""

    eta_z: eqx.AbstractVar[jax.Array]

    def _set_block(self, data: TokenData, attention, activation, eta_w, eta_z, temperature) -> None:
        """Checks the block's options and sets the fields every such flow declares (from its
        `__init__`): the forms resolved from their names, the numbers as floats."""
        check_block_options(eta_w, temperature)
        check_positive("eta_z", eta_z)
        self.data = data
        self.eta_w = as_float(eta_w)
        self.eta_z = as_float(eta_z)
        self.temperature = as_float(temperature)
        self.attention_form = get_attention(attention)
        self.activation = get_activation(activation)

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


class JointFlow(AbstractWeightsAndLogitsFlow):
    """The joint gradient flow of MLP weights and attention logits (J5–J8).

        Ẇ = −η_w ∂L/∂W,    ż = −η_z ∂L/∂z,    state y = (W, z)

    with L the block's cross-entropy (`jomasim.block.block_loss`). Full-batch gradient descent
    with rates (η_w, η_z) for k steps is the explicit-Euler discretisation of this flow with step 1
    up to t = k; equivalently the flow with rates (η_w/η, η_z/η) at t = η·k, for any η.
    """

    data: TokenData
    eta_w: jax.Array
    eta_z: jax.Array
    temperature: jax.Array
    attention_form: AbstractAttention
    activation: AbstractActivation

    def __init__(
        self,
        data: TokenData,
        *,
        attention: "str | AbstractAttention" = "softmax",
        activation: "str | AbstractActivation" = "linear",
        eta_w: float = 1.0,
        eta_z: float = 1.0,
        temperature: float = 1.0,
    ):
        """**Arguments:**

        - `data`: the token data (`make_token_data`).
        - `attention`: the attention form (`jomasim.attention`), or its name: `"linear"`,
          `"exp"` or `"softmax"`.
        - `activation`: the MLP activation (`jomasim.activation`), or its name: `"linear"`,
          `"relu"`, `"silu"` or `"gelu"`.
        - `eta_w`, `eta_z`: learning rates (> 0) of W and z.
        - `temperature`: T > 0; the logits are divided by T.
        """
        self._set_block(data, attention, activation, eta_w, eta_z, temperature)

    def __call__(self, t, y, args):
        W, z = y
        grad_W, grad_z = jax.grad(self.loss, argnums=(0, 1))(W, z)
        return -self.eta_w * grad_W, -self.eta_z * grad_z

    def projected_rate(self, t, p):
        grad_P, grad_z = self.projected_gradients(*p)
        return -self.eta_w * grad_P, -self.eta_z * grad_z

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

    data: TokenData
    eta_w: jax.Array
    temperature: jax.Array
    attention_form: AbstractAttention
    activation: AbstractActivation
    invariant: LogitInvariant

    def __init__(
        self,
        data: TokenData,
        invariant: LogitInvariant,
        *,
        activation: "str | AbstractActivation" = "linear",
        eta_w: float = 1.0,
    ):
        """**Arguments:**

        - `data`: the token data.
        - `invariant`: Theorem 1 (its kind, temperature and η_z/η_w are the flow's).
        - `activation`: the MLP activation (or its name).
        - `eta_w`: learning rate of W (> 0).
        """
        check_block_options(eta_w, invariant.temperature)
        self.data = data
        self.invariant = invariant
        self.eta_w = as_float(eta_w)
        self.temperature = invariant.temperature
        self.attention_form = invariant.attention
        self.activation = get_activation(activation)

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
