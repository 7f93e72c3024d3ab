"""Shared test set-up: float64 (importing jomasim enables it) and a fixed hypothesis profile."""

import jax
import jomasim  # noqa: F401  (enables float64)
from hypothesis import settings

settings.register_profile("jomasim", max_examples=25, deadline=None)
settings.load_profile("jomasim")

assert jax.config.jax_enable_x64
