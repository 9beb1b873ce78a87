"""CPU priority across sessions, for the tests that run beside the e2e line.

Linux groups a session's processes for the scheduler (autogroup, on here:
/proc/sys/kernel/sched_autogroup_enabled), and shares the cores between groups before
nice counts within one: a process's nice value does not lower it against another
session's. A Ray node started in a session of its own therefore took as much of the
cores as the line's whole Ray head, niced or not. A session's group has a nice value of
its own (/proc/<pid>/autogroup); raising it needs no privilege.
"""

from __future__ import annotations

import contextlib
import os


def nice_session(pid: int, nice: int) -> None:
    """Give the session group of `pid` the nice value `nice` (where Linux has them)."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/autogroup", "w") as f:
        f.write(str(nice))  # (OSError: no autogroups here, or the process is gone)


def yield_own_session(nice: int) -> None:
    """This process at `nice`, in a session of its own whose group is at `nice` too, so
    that it yields to other sessions (the e2e line's Ray heads) as well as to its own."""
    os.nice(max(0, nice - os.nice(0)))  # its priority only goes down
    with contextlib.suppress(OSError):  # a session leader already
        os.setsid()
    nice_session(os.getpid(), nice)
