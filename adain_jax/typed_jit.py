"""`jit`: `jax.jit` that keeps the jitted function's signature visible to type checkers, and that
goes through the executable cache (`adain_jax.compilation_cache`) when an application turned it on.

`jax.jit` returns a wrapper whose ``__call__`` takes ``*args, **kwargs`` and returns ``Any``, so a
checker accepts any call of a jitted function. `jit` returns a thin wrapper typed as a `Jitted` with
the function's own parameters and result, so a mistake such as ``stylize(..., alpha="x")`` is
reported where it is written. Calls go to `compilation_cache.call` (plain ``jax.jit`` unless the
cache is on); every other attribute (``lower``, ``trace``, ``eval_shape``...) is jax.jit's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Generic, ParamSpec, TypeVar, cast

import jax

from adain_jax import compilation_cache

P = ParamSpec("P")
R = TypeVar("R")


class Jitted(Generic[P, R]):
    """The static type of a jitted function: called and lowered with the function's own arguments."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        raise NotImplementedError  # never instantiated: only a type

    def lower(self, *args: P.args, **kwargs: P.kwargs) -> jax.stages.Lowered:
        raise NotImplementedError


class _Jit:
    """``jax.jit(fn)`` whose calls may be served by the executable cache."""

    def __init__(self, fn: Callable, static_argnames: tuple[str, ...]):
        self._fn, self._static_argnames = fn, static_argnames
        self._jitted = jax.jit(fn, static_argnames=static_argnames)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return compilation_cache.call(self._jitted, self._fn, self._static_argnames, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._jitted, name)


def jit(static_argnames: Sequence[str] = ()) -> Callable[[Callable[P, R]], Jitted[P, R]]:
    """Decorator: ``jax.jit(fn, static_argnames=static_argnames)``, typed as `Jitted`."""

    def wrap(fn: Callable[P, R]) -> Jitted[P, R]:
        return cast("Jitted[P, R]", _Jit(fn, tuple(static_argnames)))

    return wrap
