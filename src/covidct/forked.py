"""One piece of a step's work in a second process, for the per-patient steps that read or write hundreds of
DICOM files in pure Python (one core each): ``start(fn, ...)`` forks, runs ``fn`` there and hands back a
``Forked`` whose ``result()`` waits for it.

The child is forked, so it sees the parent's memory as it was (datasets already read, the key) without
copying it through a pipe; only the result goes back, pickled. An exception of ``fn`` is raised in the
parent as it is; a child that dies without an answer raises ``CovidctError`` with its exit code. Where
``fork`` does not exist (Windows) ``available()`` is False and callers run the work in their own process.

The parent does its own part of the work inside ``with running(child, ...)``: an exception that leaves the
block never leaves the child running, and the error raised is the one a single process would have met
first (``ahead``: the child holds the part one process would do first).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from covidct.errors import CovidctError

#: prctl's option that sends the child a signal when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1


def available() -> bool:
    """Whether this platform can fork."""
    return "fork" in multiprocessing.get_all_start_methods()


def workers(limit: int = 2) -> int:
    """The processes a step may use outside Snakemake: the CPUs this process may run on, at most ``limit``."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(limit, cpus))


def _die_with_parent(parent: int) -> None:
    """Ask Linux to end this child when its parent dies (a killed job leaves no writer behind)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the daemon flag ends it at a normal exit
        pass
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(1)


def _sendable(exc: BaseException, name: str) -> BaseException:
    """``exc`` when it survives pickling, else a RuntimeError naming only its type (never its values)."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{name} failed with {type(exc).__name__}")


class Forked:
    """A call running in a forked child: ``result()`` waits for it, ``cancel()`` ends it."""

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict):
        self.name = getattr(fn, "__name__", repr(fn))
        ctx = multiprocessing.get_context("fork")
        self._receive, send = ctx.Pipe(duplex=False)
        parent = os.getpid()

        def child() -> None:
            _die_with_parent(parent)
            try:
                answer = ("value", fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
                answer = ("error", _sendable(exc, self.name))
            try:
                send.send(answer)
            except Exception as exc:  # an unpicklable result
                why = f"{self.name}: its answer cannot be sent back ({type(exc).__name__})"
                send.send(("error", RuntimeError(why)))

        self._process = ctx.Process(target=child, daemon=True)
        self._process.start()
        send.close()
        self.taken = False  # result() was called: nothing is left to wait for or to end

    def result(self, patient: str | None = None) -> Any:
        """The call's value, or its exception raised here; a child that ended without an answer (killed: out
        of memory?) raises ``CovidctError`` naming ``patient``."""
        self.taken = True
        try:
            kind, value = self._receive.recv()
        except EOFError:
            self._process.join()
            code = self._process.exitcode
            raise CovidctError(
                f"{self.name}: its second process ended without an answer (exit code {code}"
                f"{': killed, out of memory?' if code is not None and code < 0 else ''})",
                patient,
            ) from None
        except BaseException:  # interrupted while waiting: the child must not go on writing
            self.cancel()
            raise
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


@contextmanager
def running(child: Forked | None, patient: str | None = None, ahead: bool = False) -> Iterator[Forked | None]:
    """The block in which the parent does its own part while ``child`` runs (None: no child, the parent does
    everything). An exception leaving the block ends the child and is raised, except that with ``ahead``
    (the child's part is the one a single process would do first) an ordinary exception first waits for
    the child, and the child's own error, if it has one, is raised instead: the error one process would
    have met first. An interrupt (``KeyboardInterrupt``, ``SystemExit``) always ends the child at once.

    >>> with running(start(sum, [1, 2])) as child:
    ...     mine = 3
    >>> child.result() + mine
    6
    """
    try:
        yield child
    except Exception:
        if child is not None and not child.taken and ahead:
            child.result(patient)  # raises the child's error, met first by one process; else ours below
        elif child is not None:
            child.cancel()
        raise
    except BaseException:
        if child is not None:
            child.cancel()
        raise


def start(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Forked:
    """Run ``fn(*args, **kwargs)`` in a forked child.

    >>> start(sum, [1, 2, 3]).result()
    6
    """
    return Forked(fn, args, kwargs)
