"""Fusion barriers: keep XLA from recomputing a cell's forward inside its backward.

A supernet node is an elementwise function of the conv outputs that feed it (BN
normalise, scale by the mixing weight, sum), and through identity edges of the nodes
before it. XLA's loop fusion duplicates cheap elementwise producers into every
consumer, so each backward fusion that reads a node (the transposed input of a
kernel-gradient conv, a BN backward) recomputes it from the conv outputs, and through
skip edges from the nodes before it, cell after cell: the cost grows faster than the
depth.

`jax.lax.optimization_barrier` does not help: XLA:CPU expands it away before
fusion. A conditional is a fusion boundary, so `materialize` passes the value
through a `lax.cond` whose predicate is always true but not a constant XLA can fold:
`(bits | 1) != 0` of one element of the value. The other branch (never taken) must
differ, or the cond is simplified away. Under `vmap` the predicate is read from the
stacked value (a custom batching rule), so the cond is never turned into a select:
JAX's own rule would make it a select, which XLA fuses like any elementwise op, and
then the chains reach into the forward too. In reverse mode the cotangent is
materialized the same way; without that the backward chains again.

The `materialize` setting (`nas_jax.kernels.settings`) chooses 'cond' (the CPU default)
or 'none' (elsewhere: GPU fusion is not measured). Numbers:
experiments/results/README.md ("Fusion barriers").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from nas_jax.kernels import settings


def _always_true(x: jax.Array) -> jax.Array:
    first = x.reshape(-1)[0].astype(jnp.float32)
    return (lax.bitcast_convert_type(first, jnp.int32) | 1) != 0


@jax.custom_batching.custom_vmap
def _barrier(x):
    return lax.cond(_always_true(x), lambda a: a, lambda a: -a, x)


@_barrier.def_vmap
def _barrier_vmap(axis_size, in_batched, x):
    # The predicate is read from the stacked value, so it stays unbatched and the cond
    # stays a cond. (JAX's own rule would batch it into a select, which XLA fuses
    # like any elementwise op: no barrier, and the forward chains up again.)
    return _barrier(x), in_batched[0]


@jax.custom_jvp
def _materialize_primal(x):
    return _barrier(x)


@_materialize_primal.defjvp
def _materialize_primal_jvp(primals, tangents):
    return _materialize_primal(primals[0]), tangents[0]  # linear: transposes as usual


@jax.custom_vjp
def _materialize(x):
    return _materialize_primal(x)


def _materialize_fwd(x):
    return _materialize_primal(x), None


def _materialize_bwd(_, ct):
    # The cotangent goes through a barrier too: without it the backward's elementwise
    # chains fuse across cells again (the NB201 gradient then took minutes to compile).
    # `_materialize_primal` is differentiable, so grad-of-grad works.
    return (_materialize_primal(ct),)


_materialize.defvjp(_materialize_fwd, _materialize_bwd)


def materialize(x: jax.Array, impl: str | None = None) -> jax.Array:
    """`x`, computed once into a buffer that later fusions read instead of recomputing;
    in reverse mode its cotangent as well. The values are `x` exactly. Works under jit,
    vmap and grad in any order; like any custom_vjp, not under forward-mode AD
    (jax.jvp, jacfwd): use impl='none' there. `impl=None` takes the `materialize`
    setting (`nas_jax.kernels.settings`), read at trace time."""
    if impl is None:
        impl = settings.current("materialize")
    else:
        settings.check("materialize", impl, "the impl argument", allow_auto=False)
    if impl == "none" or x.size == 0:
        return x
    return _materialize(x)
