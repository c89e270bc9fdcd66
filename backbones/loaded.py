"""Load a model once per process and reuse it: the one model cache of the project.

Every detector, backbone, ONNX session or edge model a worker process needs is built through
:func:`load_once` with a key that says what it is (name, weight file, device). The first call in a
process builds it; later calls return the same object. Keys include the process id, so a process
forked from one that already loaded a model builds its own copy instead of sharing handles (CUDA
contexts and onnxruntime sessions do not survive a fork).

This module imports nothing heavy: an ONNX-only detector does not pay for torch.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["load_once", "forget_loaded"]

_LOADED: dict[tuple[int, Hashable], Any] = {}
_LOCK = threading.RLock()  # re-entrant: a factory may load what it builds on (a model file, then a network)


def load_once(key: Hashable, factory: Callable[[], Any]) -> Any:
    """Return ``factory()`` built once per process for ``key``.

    Parameters
    ----------
    key : hashable
        What the model is, e.g. ``("backbone", "efficientnet_lite0", "cpu")`` or
        ``("onnx", "/path/u2netp.onnx", ("CPUExecutionProvider",))``. A model file's content
        hash belongs in the key when the file can change between calls.
    factory : callable
        Builds the model; called at most once per process and key (under a lock, so two
        threads never build the same model twice).

    Returns
    -------
    The model object.
    """
    full_key = (os.getpid(), key)
    with _LOCK:
        if full_key not in _LOADED:
            _LOADED[full_key] = factory()
        return _LOADED[full_key]


def forget_loaded() -> None:
    """Drop every loaded model of this process (tests; freeing memory)."""
    with _LOCK:
        _LOADED.clear()
