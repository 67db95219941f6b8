"""One child process for the supervisor: spawned in its own process group, dies with the node.

Why not `trio.lowlevel.open_process`: trio runs `Popen` in a worker thread, and Linux's
PR_SET_PDEATHSIG fires when the *thread* that forked exits (prctl(2)), which trio's idle
worker threads do after 10 s. So the child is forked from the main thread (fork+exec takes
milliseconds) and awaited through a pidfd, which also lets us signal the group while the
leader is still an unreaped zombie (its pid cannot be reused yet).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence

import trio

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent() -> None:
    """preexec_fn: ask the kernel to SIGKILL us when the node's main thread dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class ChildProcess:
    """A running child: pid, its merged stdout/stderr as a trio stream, exit detection."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        linux = sys.platform.startswith("linux")
        self.popen = subprocess.Popen(  # noqa: ASYNC220 - main thread on purpose, see module doc
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=dict(env), start_new_session=True,
            preexec_fn=_die_with_parent if linux else None,
        )
        self.pid = self.popen.pid
        assert self.popen.stdout is not None
        self.output = trio.lowlevel.FdStream(os.dup(self.popen.stdout.fileno()))
        self.popen.stdout.close()
        self._pidfd = os.pidfd_open(self.pid) if hasattr(os, "pidfd_open") else None
        self.returncode: int | None = None

    async def wait_exited(self) -> None:
        """Return once the process has exited (it stays unreaped until `reap`)."""
        if self._pidfd is not None:
            await trio.lowlevel.wait_readable(self._pidfd)
            return
        while self.popen.poll() is None:  # noqa: ASYNC110 - no pidfd (macOS): nothing to await
            await trio.sleep(0.05)

    def exited(self) -> bool:
        """True when the leader has exited, without reaping it."""
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def signal_group(self, sig: int) -> None:
        """Send sig to the child's whole process group (grandchildren included)."""
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def reap(self) -> int:
        """Collect the exit status (after `wait_exited`) and release the pidfd."""
        self.returncode = self.popen.wait()
        if self._pidfd is not None:
            trio.lowlevel.notify_closing(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        return self.returncode


async def terminate(proc: ChildProcess, grace: float) -> int:
    """SIGTERM the group, SIGKILL after `grace` seconds; kill stragglers; reap. Returns the code."""
    if not proc.exited():
        proc.signal_group(signal.SIGTERM)
        with trio.move_on_after(grace):
            await proc.wait_exited()
    if not proc.exited():
        proc.signal_group(signal.SIGKILL)
        await proc.wait_exited()
    proc.signal_group(signal.SIGKILL)  # the leader is a zombie still: its group id is safe to use
    code = proc.reap()
    await proc.output.aclose()
    return code
