"""The command-line entry points' way out of the process.

A process that has imported torch, DeepSpeed, timm and MLflow holds millions of Python objects, and the
interpreter's shutdown runs the cycle collector over all of them several times, only to free memory that the
OS takes back anyway: seconds of CPU per process, paid by every rank of every job and waited for by its
launcher. Freezing the objects out of the collector's reach instead is not safe: C++ objects the collector
would have freed (gloo's threads among them) are then destroyed by libtorch's static destructors, and a
joinable thread destroyed there aborts the process ("terminate called without an active exception").

So an entry point that finished its work leaves the way the interpreter would, minus the teardown: it waits
for non-daemon threads, runs the atexit handlers (MLflow's delivery, logging's flush, multiprocessing's and
weakref.finalize's clean-ups), flushes stdout and stderr, and ends with os._exit. Every file the framework
writes is closed by then (each is written inside a `with`).
"""
from __future__ import annotations

import atexit
import functools
import os
import sys
import threading


def leave(code: int | None = 0):
    """End the process now with `code`, after what a normal exit runs but the interpreter's teardown."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # CPython's own call at exit; it also empties the list, so nothing runs twice
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or a pipe whose reader left: nothing more can be said there
            pass
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


def entry_point(main):
    """Decorates a `main` that is a console script or `python -m` target. When this main is the process's own
    (the `__main__` module's `main`) and returns, the process leaves at once with its return value; a test
    or a program calling main() in its own process gets the value back as usual. An exception propagates
    as usual, traceback and all."""
    @functools.wraps(main)
    def run(*args, **kwargs):
        code = main(*args, **kwargs)
        if getattr(sys.modules.get("__main__"), "main", None) is run:
            leave(code)
        return code
    return run
