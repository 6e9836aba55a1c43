"""framework/entry.py: an entry point that returns leaves at once (no interpreter teardown), and loses nothing
a normal exit would have done: the exit status, buffered output, atexit handlers, non-daemon threads' work."""
import os
import subprocess
import sys
import textwrap

from framework.entry import entry_point
from tests.conftest import REPO

SCRIPT = textwrap.dedent("""
    import atexit, sys, threading, time
    from framework.entry import entry_point

    @entry_point
    def main():
        atexit.register(print, "atexit handler ran")
        threading.Thread(target=lambda: (time.sleep(0.3), print("thread finished"))).start()
        sys.stderr.write("to stderr, unflushed")
        print("x" * 100_000, end="")  # more than a pipe's buffer, left in Python's
        if sys.argv[1] == "raise":
            raise RuntimeError("a bug")
        return int(sys.argv[1])

    if __name__ == "__main__":
        sys.exit(main())
""")


def run(arg: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # output buffered, as by default
    return subprocess.run([sys.executable, "-c", SCRIPT, arg], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)


def test_a_returning_main_keeps_its_status_output_atexit_handlers_and_threads():
    for status in (0, 3):
        proc = run(str(status))
        assert proc.returncode == status
        assert proc.stdout.startswith("x" * 100_000)
        assert "thread finished" in proc.stdout and "atexit handler ran" in proc.stdout
        assert proc.stderr == "to stderr, unflushed"


def test_an_exception_ends_the_process_as_usual():
    proc = run("raise")
    assert proc.returncode == 1
    assert "RuntimeError: a bug" in proc.stderr and "atexit handler ran" in proc.stdout


def test_called_inside_another_program_it_returns():
    assert entry_point(lambda: 5)() == 5  # this process (pytest) goes on
