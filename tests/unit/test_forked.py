"""``covidct.forked``: a call in a forked child gives back its value or its error, and never outlives a failure."""

from __future__ import annotations

import os
import signal
import time

import pytest

from covidct import forked
from covidct.errors import AnonymizationError, CovidctError

pytestmark = pytest.mark.skipif(not forked.available(), reason="this platform cannot fork")


def _fail(patient: str, path: str) -> None:
    raise AnonymizationError("the file is broken", patient, path)


class _Odd(Exception):
    def __init__(self, a, b):  # cannot be rebuilt from its args: pickling it would fail in the parent
        super().__init__(f"{a}{b}")


def _odd() -> None:
    raise _Odd("x", "y")


def _pid_then_sleep(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def test_the_childs_value_and_its_error_come_back_as_they_are():
    assert forked.start(sorted, [3, 1, 2]).result() == [1, 2, 3]
    with pytest.raises(AnonymizationError) as e:
        forked.start(_fail, "P01", "/data/x.dcm").result()
    assert str(e.value) == str(AnonymizationError("the file is broken", "P01", "/data/x.dcm"))
    assert (e.value.patient, e.value.path) == ("P01", "/data/x.dcm")
    with pytest.raises(RuntimeError, match="_odd failed with _Odd"):  # its type only, never its values
        forked.start(_odd).result()


def test_a_killed_child_is_named_with_the_patient_and_a_cancelled_one_is_reaped():
    child = forked.start(time.sleep, 30)
    os.kill(child._process.pid, signal.SIGKILL)
    with pytest.raises(CovidctError, match="patient P02: .*exit code -9: killed, out of memory"):
        child.result("P02")
    slow = forked.start(_pid_then_sleep, 30)
    t0 = time.perf_counter()
    slow.cancel()
    assert time.perf_counter() - t0 < 5 and not slow._process.is_alive()


def test_workers_stays_within_the_limit():
    assert 1 <= forked.workers() <= 2 and forked.workers(1) == 1


def _sleep_then_fail(seconds: float) -> None:
    time.sleep(seconds)
    raise AnonymizationError("the child's file is broken", "P03")


def test_running_raises_the_error_one_process_meets_first_and_leaves_no_child():
    # the child's part comes first (ahead): its error wins over the parent's, which one process never reaches
    with pytest.raises(AnonymizationError, match="the child's file is broken"):
        with forked.running(forked.start(_sleep_then_fail, 0.2), "P03", ahead=True):
            raise CovidctError("the parent's file is broken", "P03")
    # ahead, but the child succeeds: the parent's own error, after the child's answer was taken
    child = forked.start(sorted, [2, 1])
    with pytest.raises(CovidctError, match="the parent's"):
        with forked.running(child, "P03", ahead=True):
            raise CovidctError("the parent's file is broken", "P03")
    assert child.taken and not child._process.is_alive()
    # the parent's part comes first: its error, and the child is ended without waiting for it
    slow = forked.start(_pid_then_sleep, 30)
    t0 = time.perf_counter()
    with pytest.raises(CovidctError, match="the parent's"):
        with forked.running(slow, "P03"):
            raise CovidctError("the parent's file is broken", "P03")
    assert time.perf_counter() - t0 < 5 and not slow._process.is_alive()
    # an interrupt ends the child at once, ahead or not
    slow = forked.start(_pid_then_sleep, 30)
    with pytest.raises(KeyboardInterrupt):
        with forked.running(slow, "P03", ahead=True):
            raise KeyboardInterrupt
    assert time.perf_counter() - t0 < 10 and not slow._process.is_alive()
    # no child: the block is the parent's alone
    with pytest.raises(CovidctError), forked.running(None, "P03", ahead=True):
        raise CovidctError("alone", "P03")
