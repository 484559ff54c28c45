"""Shared fixtures: no network, and TFDS mock reads that work without TensorFlow."""

import os
import socket

import jax
import pytest
from tensorflow_datasets.core.data_sources import array_record

from nas_jax import kernels

kernels.configure_allocator()  # as the entry points do: no page faults on XLA:CPU's buffers

# XLA:CPU compiles the supernets slowly; many tests compile the same programs, so share
# them through JAX's persistent cache (kept between local runs under .pytest_cache).
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
jax.config.update(
    "jax_compilation_cache_dir",
    os.environ.get("NAS_JAX_TEST_XLA_CACHE", os.path.join(_ROOT, ".pytest_cache", "xla")),
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def per_item_mock_reads(monkeypatch):
    # tfds 4.9.10's mock binds `__getitems__` wrongly (TypeError); read item by item.
    monkeypatch.setattr(
        array_record.ArrayRecordDataSource,
        "__getitems__",
        lambda self, keys: [self[k] for k in keys],
    )
