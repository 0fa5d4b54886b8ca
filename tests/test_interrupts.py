"""Ctrl-C is never lost: inside a ``__del__`` Python would print the KeyboardInterrupt and drop it."""
from __future__ import annotations

import signal
import sys
import time

import pytest

from tinylora.interrupts import ctrl_c_outside_finalizers, in_finalizer


class CtrlCInFinalizer:
    """An object whose finalizer is where SIGINT arrives (as it did in a graph node's ``Saved.__del__``)."""

    def __del__(self):
        signal.getsignal(signal.SIGINT)(signal.SIGINT, sys._getframe())


def test_a_frame_inside_a_del_or_called_from_one_is_in_a_finalizer():
    seen = []

    class Probe:
        def __del__(self):
            seen.append(in_finalizer(sys._getframe()))
            (lambda: seen.append(in_finalizer(sys._getframe())))()  # one call deeper

    Probe()
    assert seen == [True, True]
    assert in_finalizer(sys._getframe()) is False


def test_outside_a_finalizer_ctrl_c_raises_at_once():
    with ctrl_c_outside_finalizers():
        with pytest.raises(KeyboardInterrupt):
            signal.getsignal(signal.SIGINT)(signal.SIGINT, sys._getframe())


def test_ctrl_c_that_lands_in_a_finalizer_is_raised_after_it_instead_of_being_dropped():
    """Before: "Exception ignored in: <function Saved.__del__ ...>" and the sweep ran on to exit 0."""
    with ctrl_c_outside_finalizers():
        with pytest.raises(KeyboardInterrupt):
            CtrlCInFinalizer()          # dropped at once: __del__ runs, and the handler puts it off
            time.sleep(5)               # the retry (10 ms later) interrupts this sleep
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored on the way out


def test_without_the_handler_python_drops_a_ctrl_c_raised_in_a_finalizer(monkeypatch):
    """What the handler fixes: the default handler raises inside __del__, and Python only reports it."""
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: reported.append(unraisable.exc_type))
    CtrlCInFinalizer()                  # no KeyboardInterrupt reaches this frame
    assert reported == [KeyboardInterrupt]
