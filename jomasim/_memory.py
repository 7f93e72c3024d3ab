"""A size check before work starts: the memory a run will hold against what the machine has."""

import os
from pathlib import Path

import jax

from ._errors import OutOfRangeError


def available_bytes() -> int | None:
    """Memory that a run on JAX's default device can still take, in bytes: on a CPU the
    operating system's available memory (`MemAvailable`, else the physical memory), on an
    accelerator its memory limit less what is in use; `None` where neither can be read."""
    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        return None
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            return f"{count:.3g} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def transformer_bytes(*, copies: int, vocabulary: int, outputs: int, d_model: int, d_hidden: int, layers: int,
                      positions: int, train_sequences: int, eval_sequences: int) -> int:
    """An estimate of the memory that training `copies` Transformers (seeds trained side by side)
    with Adam holds at once, in float64 bytes: the parameters four times (values, gradients,
    Adam's two moments); per sequence of a training batch every layer's activations (residual
    stream and its projections, attention map, MLP hidden layer) and the output logits, twice (kept
    for the backward pass); per sequence of an evaluation batch the outputs an evaluation keeps
    (every layer's attention map and MLP hidden layer, the logits) and one layer's working stream.

    **Arguments:**

    - `copies`: models trained side by side.
    - `vocabulary`, `outputs`: input tokens and output classes.
    - `d_model`, `d_hidden`, `layers`: the model's width, MLP width and depth.
    - `positions`: the sequence length.
    - `train_sequences`, `eval_sequences`: sequences in a training and in an evaluation batch.
    """
    parameters = (vocabulary + outputs) * d_model + layers * (4 * d_model * d_model + 2 * d_model * d_hidden)
    trained = positions * (layers * (4 * d_model + d_hidden + positions) + outputs)
    evaluated = positions * (layers * (d_hidden + positions) + 4 * d_model + outputs)
    return 8 * copies * (4 * parameters + 2 * train_sequences * trained + eval_sequences * evaluated)


def check_fits(needed: float, what: str, lower: str) -> None:
    """Raises `OutOfRangeError`, in one line with the estimate and what is available, when a run
    needs more memory than the machine has (no check where the available memory is unknown).

    **Arguments:**

    - `needed`: the estimated bytes of the arrays the run holds at once.
    - `what`: the run, for the message (e.g. `"compare with 8 seeds × 101 saves"`).
    - `lower`: what the user can lower to make it fit (e.g. `"--seeds or the saves (--save-every)"`).
    """
    available = available_bytes()
    if available is not None and needed > available:
        raise OutOfRangeError(f"{what} needs about {_size(needed)} of memory and {_size(available)} is available; "
                              f"lower {lower}")
