"""The driver of every task's Ray job: run the workload, keep its output on shared storage.

    python -m argus.training.launch --log FILE --cwd DIR -- COMMAND...

Runs COMMAND in DIR with stdout and stderr merged, copies every byte both to its
own stdout (which Ray keeps as the job's log) and to FILE (which argus's API reads
and follows), and exits with COMMAND's exit code. SIGTERM and SIGINT (Ray stopping
the job) are passed on to COMMAND. Standard library only: it runs on the Ray nodes.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from types import FrameType


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" not in argv:
        raise SystemExit("usage: python -m argus.training.launch --log FILE --cwd DIR -- COMMAND")
    cut = argv.index("--")
    parser = argparse.ArgumentParser(prog="argus.training.launch")
    parser.add_argument("--log", required=True)
    parser.add_argument("--cwd", required=True)
    args = parser.parse_args(argv[:cut])
    command = argv[cut + 1 :]
    if not command:
        raise SystemExit("argus.training.launch: no command after --")
    return args, command


def _note(log: object, text: str) -> None:
    line = f"[argus {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}] {text}\n".encode()
    sys.stdout.buffer.write(line)
    sys.stdout.buffer.flush()
    write = getattr(log, "write", None)
    if write is not None:
        write(line)
        log.flush()  # type: ignore[attr-defined]


def _read(fd: int) -> bytes:
    while True:
        try:
            return os.read(fd, 65536)
        except InterruptedError:  # a signal arrived (and was passed on): read on
            continue


def main(argv: list[str] | None = None) -> int:
    args, command = _parse(sys.argv[1:] if argv is None else argv)
    os.makedirs(os.path.dirname(args.log) or ".", exist_ok=True)
    with open(args.log, "ab", buffering=0) as log:
        if not os.path.isdir(args.cwd):
            _note(log, f"the working directory {args.cwd} does not exist")
            return 2
        # The handlers go in before the command starts: a stop that comes while it starts
        # (Ray's stop_job sends SIGTERM) is passed on as soon as there is a child to end.
        started: list[subprocess.Popen[bytes]] = []
        pending: list[int] = []

        def forward(signum: int, _frame: FrameType | None) -> None:
            if not started:
                pending.append(signum)
            elif started[0].poll() is None:
                started[0].send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        _note(log, f"task starting on {os.uname().nodename}: {' '.join(command)[:500]}")
        try:
            child = subprocess.Popen(
                command, cwd=args.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
        except OSError as e:
            _note(log, f"could not start the command: {e}")
            return 127
        started.append(child)
        for signum in pending:
            child.send_signal(signum)
        assert child.stdout is not None
        out = child.stdout.fileno()
        while chunk := _read(out):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            log.write(chunk)
        code = child.wait()
        if code < 0:
            _note(log, f"the command was ended by signal {-code}")
            return 128 - code
        _note(log, f"the command exited with code {code}")
        return code


if __name__ == "__main__":
    sys.exit(main())
