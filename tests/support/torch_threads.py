"""Torch on the small shared CPUs tests run on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread meanwhile: on 2 cores shared with other test processes, one
    thread is several times faster than two fighting (measured: 3 tiny DiffRIR training
    steps, 3.7 s on one thread, 8.1 s on two; a 64x64 DiffEdit edit on a busy machine,
    11.6 s -> 0.6 s, the threads' spin-waiting being the cost)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
