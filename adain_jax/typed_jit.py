"""`jit`: `jax.jit` that keeps the jitted function's signature visible to type checkers.

`jax.jit` returns a wrapper whose ``__call__`` takes ``*args, **kwargs`` and returns ``Any``, so a
checker accepts any call of a jitted function. `jit` returns that same wrapper, typed as a `Jitted`
with the function's own parameters and result, so a mistake such as ``stylize(..., alpha="x")`` is
reported where it is written. Nothing changes at run time: the object is jax.jit's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, ParamSpec, TypeVar, cast

import jax

P = ParamSpec("P")
R = TypeVar("R")


class Jitted(Generic[P, R]):
    """The static type of a jitted function: called and lowered with the function's own arguments."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        raise NotImplementedError  # never instantiated: only a type

    def lower(self, *args: P.args, **kwargs: P.kwargs) -> jax.stages.Lowered:
        raise NotImplementedError


def jit(static_argnames: Sequence[str] = ()) -> Callable[[Callable[P, R]], Jitted[P, R]]:
    """Decorator: ``jax.jit(fn, static_argnames=static_argnames)``, typed as `Jitted`."""

    def wrap(fn: Callable[P, R]) -> Jitted[P, R]:
        return cast("Jitted[P, R]", jax.jit(fn, static_argnames=tuple(static_argnames)))

    return wrap
