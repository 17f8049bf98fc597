"""One piece of a step's work in a second process, for the per-patient steps that read or write hundreds of
DICOM files in pure Python (one core each): ``start(fn, ...)`` forks, runs ``fn`` there and hands back a
``Forked`` whose ``result()`` waits for it.

The child is forked, so it sees the parent's memory as it was (datasets already read, the key) without
copying it through a pipe; only the result goes back, pickled. An exception of ``fn`` is raised in the
parent as it is; a child that dies without an answer raises ``RuntimeError`` with its exit code. Where
``fork`` does not exist (Windows) ``available()`` is False and callers run the work in their own process.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any


def available() -> bool:
    """Whether this platform can fork."""
    return "fork" in multiprocessing.get_all_start_methods()


class Forked:
    """A call running in a forked child: ``result()`` waits for it, ``cancel()`` ends it."""

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict):
        self.name = getattr(fn, "__name__", repr(fn))
        ctx = multiprocessing.get_context("fork")
        self._receive, send = ctx.Pipe(duplex=False)

        def child() -> None:
            try:
                answer = ("value", fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
                answer = ("error", exc)
            try:
                send.send(answer)
            except Exception as exc:  # an unpicklable result or exception
                send.send(("error", RuntimeError(f"{self.name}: its answer cannot be sent back ({exc})")))

        self._process = ctx.Process(target=child, daemon=True)
        self._process.start()
        send.close()

    def result(self) -> Any:
        """The call's value, or its exception raised here."""
        try:
            kind, value = self._receive.recv()
        except EOFError:
            self._process.join()
            raise RuntimeError(
                f"{self.name}: its process ended without an answer (exit code {self._process.exitcode})"
            ) from None
        finally:
            self._receive.close()
        self._process.join()
        if kind == "error":
            raise value
        return value

    def cancel(self) -> None:
        """End the child (when the parent's own part failed and its answer is no longer wanted)."""
        self._process.terminate()
        self._process.join()
        self._receive.close()


def start(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Forked:
    """Run ``fn(*args, **kwargs)`` in a forked child.

    >>> start(sum, [1, 2, 3]).result()
    6
    """
    return Forked(fn, args, kwargs)
