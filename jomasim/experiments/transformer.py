"""JoMA against a one-layer Transformer: `jomasim compare --model transformer`.

The trained model is `jomasim.models.OneLayerTransformer` on the §3.5 data model: sampled sequences
(or the expectation limit), direct logits or learned W_Q, W_K, fixed or learned embeddings, identity
or learned W_V, LayerNorm, a head, SGD or Adam — each of JoMA's idealisations a switch of
`TransformerCompareConfig`. At every save its z, V and w_q are probed (`OneLayerTransformer.probe`);
the joint, reduced and tracked JoMA flows (and, with W_Q, W_K or Adam, the reduced flow driven by
the measured preconditioner P(t)) start from the probed initial state (W(0) = U_C V(0) + u_q w_q(0)ᵀ
on the data's embeddings, times LayerNorm's gain g₀ with a LayerNorm on the MLP's input, z(0) of the
first query) at the run's rates, on the SGD clock or, with Adam, on Adam's clock of the MLP's
weights (P(t) then Adam's own, JOMA_MATH §10.4), and everything `compare` measures on the block is
measured on the Transformer, plus Theorem 1 per query, the logits' rate factor and preconditioner,
LayerNorm's paths, Adam's clocks and the attention entropy on sequences
(`results.TransformerProbes`).
"""

import dataclasses
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from .._errors import OutOfRangeError, at_least, check_nonnegative
from .._settings import setting
from ..comparison import carried_shares, cumulative_trapezoid, theorem1_curves
from ..data import Bags, check_query_count, expectation_bags, query_embeddings, sample_bags
from ..metrics import entropy
from ..models.one_layer import ATTENTION_PARAMS, EMBEDDING_CHOICES, NORMS, VALUE_CHOICES, OneLayerTransformer
from ..theory import JointFlow
from ..train import OPTIMIZERS, OptimizerSpec, adam_inverse_scale, adam_step_factor, make_optimizer, train, with_params
from .block import AbstractTrainedModel, MemberNumbers, Readout, block_member_bytes, build_member
from .compare import CompareConfig
from .results import TransformerProbes


class TrainedTransformer(AbstractTrainedModel):
    """The one-layer Transformer (`OneLayerTransformer`) trained against the flows: its switches
    and sizes are the fields of its setting, a `TransformerCompareConfig`."""

    name: ClassVar[str] = "transformer"

    def member_bytes(self, setting, steps, saves, mode):
        """The block's estimate, plus the saved parameters and the probes of every save (each
        query's preconditioner P, and with W_Q, W_K the preconditioned flow's states), plus one
        step's sampled sequences (the larger of the training and the evaluation batch: each
        token's embedding, logit and hidden input, and their gradients)."""
        d, K, M, Q = setting.dim, setting.n_classes, setting.n_tokens, setting.queries
        parameters = d * K + 2 * d * d + (M + Q) * d + K * K + 4 * d + Q * M
        probes = 2 * Q * M + Q * M * M + (d * K + M * K + M if setting.attention_params == "qk" else 0)
        tokens = K * Q * max(setting.batch, setting.eval_sequences) * max(setting.sequence_length, M)
        return block_member_bytes(setting, steps, saves, mode) + 2 * 8 * (saves * (parameters + probes) + tokens * (3 * d + 4))

    def initial_model(self, setting: "TransformerCompareConfig", numbers: MemberNumbers) -> tuple[JointFlow, OneLayerTransformer]:
        """The member's data (as the block's, from its seed) in its joint flow, and the
        Transformer at initialisation: W(0) and the first query's z(0) are the block's."""
        joint, (W0, z0), _ = build_member(setting, numbers)
        key = jax.random.fold_in(jax.random.key(numbers.seed), 1)
        logits_key, model_key = jax.random.split(key)
        others = numbers.init_scale * jax.random.normal(logits_key, (setting.queries - 1, z0.shape[0]), z0.dtype)
        data = joint.data
        embeddings = jnp.concatenate([data.U_c, query_embeddings(data.U, setting.queries)], axis=1).T
        model = OneLayerTransformer(
            embeddings, W0, jnp.concatenate([z0[None], others]), model_key, attention_params=setting.attention_params,
            learned_embeddings=setting.embeddings == "learned", learned_value=setting.value == "learned", norm=setting.norm,
            head=setting.head, attention=setting.attention, activation=setting.activation, temperature=numbers.temperature)
        return joint, model

    def start(self, setting, numbers):
        """The joint flow and the state the probes read at initialisation: W(0) = g₀ (U_C V(0) +
        u_q w_q(0)ᵀ) on the data's embeddings (g₀: LayerNorm's gain, `start_gain`; 1 without it)
        and the first query's z(0), the flow's η_w times g₀²; with `measured_rate` the flow's η_z
        is multiplied by the first query's mean rate factor there."""
        joint, model = self.initial_model(setting, numbers)
        probe = model.probe()
        if setting.measured_rate:
            joint = eqx.tree_at(lambda flow: flow.eta_z, joint, joint.eta_z * jnp.mean(probe.rate[0]))
        gain = self.start_gain(setting, joint, model)
        joint = eqx.tree_at(lambda flow: flow.eta_w, joint, joint.eta_w * gain**2)
        return joint, _block_state(joint, probe, gain)

    def start_gain(self, setting: "TransformerCompareConfig", joint: JointFlow, model: OneLayerTransformer) -> jax.Array:
        """g₀, LayerNorm's gain on JoMA's read at initialisation (1 without LayerNorm on the MLP's
        input): the mean 1/σ of the MLP's input over the frequency bags (`read_gain`).

        With it the block stands for the Transformer read as V = g₀ v_lᵀ diag(γ) w_k (and w_q
        likewise): the forward pass sees the MLP's weights divided by σ, and the MLP's gradient,
        through the normalised input, is divided by σ again, so in these coordinates the MLP moves
        at η_w g₀², the rate the flows run at (JOMA_MATH §10.3). Theorem 1's closed form is the same
        in either reading; only the flows change. It holds while σ stays near its start."""
        return model.read_gain(expectation_bags(joint.data.X, setting.queries))

    def bags(self, setting: "TransformerCompareConfig", key: jax.Array, X: jax.Array, per_pair: int) -> Bags:
        """`per_pair` sampled sequences of every class and query (the expectation bags if L = 0)."""
        if setting.sequence_length == 0:
            return expectation_bags(X, setting.queries)
        return sample_bags(key, X, setting.queries, setting.sequence_length, per_pair)

    def optimizer(self, setting: "TransformerCompareConfig", labels, numbers: MemberNumbers) -> optax.GradientTransformation:
        """The member's optimiser at its rates, with the coupled decay on W in front when there is one."""
        optimizer = make_optimizer(OptimizerSpec(setting.optimizer), labels, numbers.eta_w, numbers.eta_z)
        if not setting.weight_decay:
            return optimizer
        return optax.chain(optax.add_decayed_weights(setting.weight_decay, mask=_mlp_weights), optimizer)

    def train_and_read(self, setting, joint, y0, numbers, steps, save_steps):
        """The Transformer trained on fresh sequences every step (from the member's seed) and
        probed at the saves: z and V of the first query, the block state they stand for, the
        loss on the expectation bags, and the `TransformerProbes`."""
        _, model = self.initial_model(setting, numbers)
        data = joint.data
        gain = self.start_gain(setting, joint, model)
        sequence_key, evaluation_key = jax.random.split(jax.random.fold_in(jax.random.key(numbers.seed), 2))
        adam = setting.optimizer == "adam"
        saved, losses, *states = train(
            model,
            lambda transformer, bags: transformer(bags),
            lambda labels: self.optimizer(setting, labels, numbers),
            steps=steps,
            save_steps=save_steps,
            batches=lambda step: self.bags(setting, jax.random.fold_in(sequence_key, step), data.X, setting.batch),
            keep_state=adam,
        )
        expectation = expectation_bags(data.X, setting.queries)
        evaluation = self.bags(setting, evaluation_key, data.X, setting.eval_sequences)

        def read(params, state):
            checkpoint = with_params(model, params)
            probe = checkpoint.probe()
            # how a step moves the first query's logits per unit of −η_z ∂L/∂z: SGD's chain rule
            # through W_Q, W_K (I for direct logits), or Adam's J D⁻¹ Jᵀ
            preconditioner = (checkpoint.scaled_preconditioner(adam_inverse_scale(state, "z")["logits"]) if adam
                              else probe.preconditioner)[0]
            # Adam's D⁻¹ on the MLP's weights, in the block's coordinates (read through γ, which
            # the block's W carries; exact with fixed embeddings and an identity value)
            weight_preconditioner = checkpoint.read_scale()[:, None] ** 2 * adam_inverse_scale(state, "w")["W"] if adam else None
            position_entropy = jnp.mean(entropy(checkpoint.attention_distribution(evaluation), axis=1))
            paths = checkpoint.path_gradients(expectation)[:, 0]
            return (probe, checkpoint(expectation), position_entropy, jnp.mean(probe.rate),
                    checkpoint.read_gain(expectation), preconditioner, weight_preconditioner,
                    -numbers.eta_z * paths @ preconditioner.T)

        probes, loss, entropy_sequences, rate, read_gain, preconditioner, weight_preconditioner, path_rates = jax.vmap(read)(
            saved, states[0] if adam else None)
        W = jax.vmap(lambda z, V, w_q: _block_state(joint, (z, V, w_q), gain)[0])(probes.z, probes.V, probes.w_q)
        V = gain * probes.V
        nc_queries = jnp.stack([theorem1_curves(joint.invariant((y0[0], probes.z[0, m])), V, probes.z[:, m], data.X).nc_zhat_z
                                for m in range(setting.queries)], axis=-1)
        shares = carried_shares(probes.z[:, 0], path_rates, save_steps)
        if not adam:
            # with direct logits P = I, the reduced flow's own
            return Readout(W, probes.z[:, 0], V, losses, loss,
                           TransformerProbes(nc_queries, rate, entropy_sequences,
                                             preconditioner if setting.attention_params == "qk" else None, read_gain, shares))
        # Adam's clock (JOMA_MATH §10.4): how far a step moves each group per unit of gradient
        # against an SGD step, summed over the steps (the flows' times must increase: a factor
        # that is not finite, after training diverged, counts as SGD's)
        adam_rate_z, adam_rate_w = (_from_first_step(jax.vmap(lambda state: adam_step_factor(state, group))(states[0]))
                                    for group in ("z", "w"))
        clock_w = cumulative_trapezoid(jnp.where(jnp.isfinite(adam_rate_w), adam_rate_w, 1.0), save_steps)
        # per unit of the MLP's clock, Adam moves the logits by η_z J D⁻¹ Jᵀ and the MLP by η_w D_W⁻¹
        per_unit = lambda values: _from_first_step(values) / adam_rate_w.reshape((-1, 1, 1))  # noqa: E731
        return Readout(W, probes.z[:, 0], V, losses, loss,
                       TransformerProbes(nc_queries, rate, entropy_sequences, per_unit(preconditioner), read_gain, shares,
                                         adam_rate_z, cumulative_trapezoid(adam_rate_z, save_steps), adam_rate_w, clock_w,
                                         per_unit(weight_preconditioner)),
                       clock_w)


@dataclasses.dataclass(frozen=True)
class TransformerCompareConfig(CompareConfig):
    """A comparison on a one-layer Transformer. Defaults: the block's Fig. 2 setting on sampled
    sequences of L = 64 tokens, learned W_Q and W_K, fixed embeddings, identity value, no
    LayerNorm, no head, SGD. With `sequence_length=0, attention_params="logits"` and the other
    switches at their defaults it is the JoMA block."""

    model: ClassVar[AbstractTrainedModel] = TrainedTransformer()
    size_options: ClassVar[tuple[str, ...]] = (*CompareConfig.size_options, "--sequence-length", "--batch",
                                               "--eval-sequences", "--queries")

    sequence_length: int = setting(64, "contextual tokens per sampled sequence, L (0: the expectation limit, "
                                   "each class its frequency bag)", check=at_least(0))
    queries: int = setting(1, "query tokens M_Q; every class's contextual tokens are shared by all of them",
                           check=at_least(1))
    batch: int = setting(8, "sampled sequences per class and query at every step (with L > 0)", check=at_least(1))
    eval_sequences: int = setting(4, "sequences per class and query in the fixed batch the entropy on sequences "
                                  "is measured on", check=at_least(1))
    attention_params: str = setting("qk", "attention logits: direct parameters z, or learned W_Q, W_K",
                                    choices=ATTENTION_PARAMS)
    embeddings: str = setting("fixed", "token embeddings: the data model's orthonormal U, or learned from it",
                              choices=EMBEDDING_CHOICES)
    value: str = setting("identity", "the value matrix W_V: identity, or learned from the identity", choices=VALUE_CHOICES)
    norm: str = setting("none", "LayerNorm: none, on the MLP's input (post), or also on the attention's inputs (pre)",
                        choices=NORMS)
    head: bool = setting(False, "a learned linear head on the hidden nodes (else they are the logits)")
    weight_decay: float = setting(0.0, "coupled L2 decay on the MLP's weights W in training (the flows carry none: "
                                  "a setting the theory does not model)", check=check_nonnegative)
    optimizer: str = setting("sgd", "optimizer of every parameter, at rates eta_z (attention) and eta_w (the rest)",
                             choices=OPTIMIZERS)
    measured_rate: bool = setting(False, "run the flows' logits (and Theorem 1's kappa) at eta_z times the rate factor "
                                  "the probes measure at initialisation (W_Q, W_K move z at that factor of direct "
                                  "logits), not at eta_z")
    scale_closure: bool = setting(False, "give the flow driven by the measured preconditioner the rate of LayerNorm's "
                                  "scale path, from the flow's own state (needs a LayerNorm, and W_Q, W_K or Adam)")

    def check_fields(self):
        super().check_fields()
        check_query_count("queries", self.queries, dim=self.dim, n_tokens=self.n_tokens)
        if self.scale_closure and (self.norm == "none" or (self.attention_params == "logits" and self.optimizer == "sgd")):
            raise OutOfRangeError(
                f"scale_closure=True is not allowed with norm={self.norm!r}, attention_params={self.attention_params!r}, "
                f"optimizer={self.optimizer!r}; it needs a LayerNorm (norm post or pre) and a flow driven by a measured "
                "preconditioner (attention_params qk, or optimizer adam)")


def _mlp_weights(params):
    """The mask of the MLP's first layer W among the Transformer's parameters (what weight decay acts on)."""
    return jax.tree_util.tree_map_with_path(lambda path, _: getattr(path[0], "key", None) == "W", params)


def _from_first_step(values: jax.Array) -> jax.Array:
    """Per-save values read off Adam's state with the start's (no step taken, no second moment)
    replaced by the first save's: the first interval runs at the first measured value."""
    return values.at[0].set(values[1])


def _block_state(joint: JointFlow, probe, gain) -> tuple[jax.Array, jax.Array]:
    """The block state (W, z) a probe stands for, read with LayerNorm's gain g₀ at the start
    (`TrainedTransformer.start_gain`): W = g₀ (U_C V + u_q w_qᵀ) with the first query's w_q
    and z (`probe` is a `Probe` or its first three fields)."""
    z, V, w_q = probe[:3]
    data = joint.data
    return gain * (data.U_c @ V + jnp.outer(data.u_q, w_q[0])), z[0]


COMPARE_MODELS = {config.model.name: config for config in (CompareConfig, TransformerCompareConfig)}
"""The models `jomasim compare --model` trains, by name (`AbstractTrainedModel.name`): their configs."""
