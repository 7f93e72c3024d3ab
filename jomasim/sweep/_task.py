"""What a sweep computes: the interface between the sweep machinery and an experiment."""

import abc
from collections.abc import Callable, Hashable
from typing import Any

import jax


class SweepTask(abc.ABC):
    """One experiment run at every point of a grid.

    A point is a dict giving a value to every axis. Axes are *numeric* (learning rates, seeds, ...:
    they become arrays, so points differing only in them share one compiled, vmapped call) or
    *static* (attention form, activation, ...: they change the code, so each combination gets its
    own compile). Settings that change array shapes are not axes: they are fixed for a sweep.
    """

    @property
    @abc.abstractmethod
    def axes(self) -> dict[str, tuple | None]:
        """Every axis name, with its allowed values for static axes and `None` for numeric ones."""

    @abc.abstractmethod
    def complete(self, values: dict[str, Any]) -> dict[str, Any]:
        """The full point for `values` (a subset of the axes): defaults filled in, derived axes
        computed, every value checked (raising a `JomasimError` that names it)."""

    @abc.abstractmethod
    def static_key(self, point: dict[str, Any]) -> Hashable:
        """What decides the compiled code of `point`; points with equal keys share a compile."""

    @property
    @abc.abstractmethod
    def numeric_names(self) -> tuple[str, ...]:
        """The point entries passed to `point_function` as arrays."""

    @abc.abstractmethod
    def point_function(self, key: Hashable) -> Callable[[dict[str, jax.Array]], dict[str, jax.Array]]:
        """The traceable computation of one point with static key `key`: numbers (scalars named
        by `numeric_names`) to results (scalars). The sweep vmaps and shards it."""

    def result_names(self, key: Hashable) -> tuple[str, ...]:
        """The results `point_function(key)` returns, found by tracing it (no compile, no work)."""
        numbers = {name: jax.ShapeDtypeStruct((), jax.numpy.result_type(float)) for name in self.numeric_names}
        return tuple(jax.eval_shape(self.point_function(key), numbers))

    def compiler_options(self, platform: str) -> dict:
        """XLA options (`jax.jit`'s `compiler_options`) for this task's programs on `platform`
        (`"cpu"`, `"gpu"`, ...); none unless a task has measured better ones."""
        return {}

    def shardable(self) -> bool:
        """Whether `point_function` may run inside `jax.shard_map` (every device its own loops, so an
        adaptive solve waits only for the slowest point on its own device); otherwise a chunk on
        several devices is partitioned by `jax.jit` from its input sharding instead."""
        return True

    memory_levers: str = "--chunk-size or the steps and saves"
    """What a user can lower when a chunk does not fit (the memory check's message)."""

    def point_bytes(self) -> int:
        """An estimate of the memory one point holds while its chunk runs, in bytes, for the size
        check before a sweep starts (0: no estimate)."""
        return 0

    @abc.abstractmethod
    def failures(self, row: dict[str, Any]) -> str:
        """What went wrong at a point, in words, from its results row (`"ok"` if nothing)."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """The task's fixed settings as JSON-ready values (saved with the grid, compared on resume)."""
