"""Ports for the servers and Ray clusters the tests start, one worker's never handed out twice."""

from __future__ import annotations

import itertools
import random
import socket


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# Test ports come from below the kernel's ephemeral range (32768+), which it hands out again
# to any bind to port 0 and any outgoing connection: in a full run the stack's API port,
# picked there, was taken in the seconds before `argus up` bound it, and the stack's
# readiness poll got another worker's test server's answer. Above Ray's default worker
# ports (10002-19999) of a head on default ports. A few ports (argus's own, redis's) come
# from a region of their own, so that they never fall in a cluster's block.
FEW_PORTS = range(20000, 21000)
BLOCK_PORTS = range(21000, 32768)
_handed_out: list[range] = []  # this process's, bound or about to be


def port_blocks(count: int, size: int, region: range = BLOCK_PORTS) -> list[int]:
    """Bases of `count` free port ranges of `size` in `region`, none handed out before."""
    blocks = list(range(region.start, region.stop - size, size))
    random.shuffle(blocks)
    free = (
        b
        for b in blocks
        if not any(b < r.stop and r.start < b + size for r in _handed_out)
        and all(_free(p) for p in range(b, b + size))
    )
    found = list(itertools.islice(free, count))  # binds no more blocks than it needs
    assert len(found) == count, "no free port ranges for the test cluster"
    _handed_out.extend(range(b, b + size) for b in found)
    return found


def free_ports(count: int) -> list[int]:
    """`count` ports in a row for servers of a test's own (argus's API, its agent, redis)."""
    (base,) = port_blocks(1, count, FEW_PORTS)
    return list(range(base, base + count))
