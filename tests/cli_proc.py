"""``python -m condvest …`` in a real child process, without paying the interpreter start-up and
the imports (~1 s of CPU on this machine) for each of the suite's ~360 command runs.

A zygote — a Python process that has imported ``condvest.cli.app``, as ``python -m condvest``
does before it calls ``main()`` — forks one child per command. The child gets its own stdin
(/dev/null), stdout and stderr pipes, environment (replaced whole, then ``time.tzset()``),
working directory and ``sys.argv``, then runs ``condvest.__main__`` with ``runpy`` exactly as
``-m`` does; it exits through the normal interpreter shutdown (stdio flushed, atexit handlers
run). It is a real process: its own pid (the one its locks record), a real exit status, and
``SIGKILL`` from the fault hook kills it as it kills any process.

What a forked child does not repeat is import-time work: modules are imported once, in the
zygote, under the environment the zygote started with (the test session's, without any
``CONDVEST_*``). condvest reads its settings, the clock and the environment at run time, so
this changes nothing it does; a test that needs a fresh interpreter anyway (the entry point
itself, the host time zone) passes ``fresh=True``, and ``pytest --fresh-cli`` runs every
command in a fresh interpreter (the reference this runner must agree with).

Run as a script, this file is the zygote: ``python cli_proc.py <unix socket path>``; it exits
when its stdin (a pipe from the test process) closes."""

from __future__ import annotations

import contextlib
import json
import locale
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

FRESH = {"all": False}
"""Set by ``pytest --fresh-cli`` (conftest): every command in a fresh interpreter."""

_HEADER = struct.Struct("!I")


# -- the test side ------------------------------------------------------------------------------
class _Zygote:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="condvest-zygote-")
        self.path = os.path.join(self.dir, "sock")
        self.log = os.path.join(self.dir, "log")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, self.path],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env={k: v for k, v in os.environ.items() if not k.upper().startswith("CONDVEST_")},
                cwd=self.dir,
            )
        deadline = time.monotonic() + 120
        while not os.path.exists(self.path):
            if self.proc.poll() is not None:
                with open(self.log) as log:
                    raise RuntimeError(f"the CLI zygote exited: {log.read()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("the CLI zygote did not start within 120 s")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)


_zygote: _Zygote | None = None
_zygote_lock = threading.Lock()


def _get_zygote() -> _Zygote:
    global _zygote
    with _zygote_lock:
        if _zygote is None or _zygote.proc.poll() is not None:
            _zygote = _Zygote()
        return _zygote


def stop_zygote() -> None:
    """End of session (conftest): the zygote exits; commands still running are not touched."""
    global _zygote
    with _zygote_lock:
        if _zygote is not None:
            _zygote.stop()
            _zygote = None


def _argv(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "condvest", *args]


def _text(data: bytes) -> str:
    # what subprocess does with text=True
    text = data.decode(locale.getpreferredencoding(False))
    return text.replace("\r\n", "\n").replace("\r", "\n")


class CliProcess:
    """The part of ``subprocess.Popen`` (text mode, stdout and stderr piped) the tests use."""

    def __init__(
        self, args: Sequence[str], *, env: Mapping[str, str], cwd: str | os.PathLike[str] | None
    ) -> None:
        self.args = _argv(args)
        self.returncode: int | None = None
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        request = json.dumps(
            {"argv": list(args), "env": dict(env), "cwd": os.fspath(cwd or os.getcwd())}
        ).encode()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY)
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(_get_zygote().path)
            message = _HEADER.pack(len(request)) + request
            sent = socket.send_fds(conn, [message], [null, out_w, err_w])
            conn.sendall(message[sent:])
        except BaseException:
            conn.close()
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            for fd in (null, out_w, err_w):
                os.close(fd)
        self._conn = conn
        self._reply = b""
        self.pid = int(self._read_line())
        self._open = {out_r: self._out, err_r: self._err}

    def _read_line(self) -> str:
        self._conn.settimeout(None)
        while b"\n" not in self._reply:
            chunk = self._conn.recv(64)
            if not chunk:
                raise RuntimeError("the CLI zygote went away")
            self._reply += chunk
        line, _, self._reply = self._reply.partition(b"\n")
        return line.decode()

    def _pump(self, deadline: float | None) -> bool:
        """Read output and the exit status until both are in or ``deadline``; True when done."""
        self._status_if_in()
        with selectors.DefaultSelector() as sel:
            for fd in self._open:
                sel.register(fd, selectors.EVENT_READ)
            if self.returncode is None:
                sel.register(self._conn, selectors.EVENT_READ)
            while self._open or self.returncode is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                for key, _ in sel.select(left):
                    if key.fileobj is self._conn:
                        sel.unregister(self._conn)
                        self.returncode = int(self._read_line())
                        self._conn.close()
                        continue
                    fd = key.fd
                    chunk = os.read(fd, 65536)
                    if chunk:
                        self._open[fd].append(chunk)
                    else:
                        sel.unregister(fd)
                        os.close(fd)
                        del self._open[fd]
        return True

    def _status_if_in(self) -> None:
        if self.returncode is None and b"\n" in self._reply:
            self.returncode = int(self._read_line())
            self._conn.close()

    def poll(self) -> int | None:
        self._status_if_in()
        if self.returncode is None:
            self._conn.settimeout(0)
            try:
                chunk = self._conn.recv(64)
            except BlockingIOError:
                return None
            if not chunk:
                raise RuntimeError("the CLI zygote went away")
            self._reply += chunk
            self._status_if_in()
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._pump(deadline):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return _text(b"".join(self._out)), _text(b"".join(self._err))

    def wait(self, timeout: float | None = None) -> int:
        self.communicate(timeout)
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def __del__(self) -> None:
        for fd in getattr(self, "_open", {}):
            os.close(fd)


def start(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str] | None = None,
) -> CliProcess | subprocess.Popen[str]:
    """``python -m condvest *args`` started, stdout and stderr piped, stdin /dev/null."""
    if FRESH["all"]:
        return subprocess.Popen(
            _argv(args),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    return CliProcess(args, env=env, cwd=cwd)


def run(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 120,
    fresh: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run([python, "-m", "condvest", *args], capture_output=True, text=True,
    stdin=DEVNULL)``; in a fresh interpreter when ``fresh`` (or ``pytest --fresh-cli``)."""
    if fresh or FRESH["all"]:
        return subprocess.run(
            _argv(args),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    proc = CliProcess(args, env=env, cwd=cwd)
    try:
        out, err = proc.communicate(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode is not None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# -- the zygote -----------------------------------------------------------------------------
def _recv_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, 3)
    while len(data) < _HEADER.size:
        data += conn.recv(1 << 16)
    (size,) = _HEADER.unpack_from(data)
    while len(data) < _HEADER.size + size:
        chunk = conn.recv(1 << 16)
        if not chunk:
            raise ConnectionError("request cut short")
        data += chunk
    return json.loads(data[_HEADER.size : _HEADER.size + size]), fds


def _serve(path: str) -> dict[str, Any]:
    """Accept requests and fork; returns (in the child only) the request to run."""
    import condvest.cli.app  # noqa: F401  (what `python -m condvest` imports before main())

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    listener.listen(64)
    os.rename(path + ".tmp", path)  # the test side waits for this name
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "parent")
    children: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, connection)
    while True:
        for key, _ in sel.select():
            if key.data == "parent":
                if not os.read(key.fd, 4096):  # the test process is gone or done
                    sys.exit(0)
            elif key.data is None:
                conn, _ = listener.accept()
                try:
                    request, fds = _recv_request(conn)
                except (OSError, ValueError):
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:
                    sel.close()
                    listener.close()
                    for pidfd, (_pid, other) in children.items():
                        os.close(pidfd)
                        other.close()
                    conn.close()
                    for target, fd in enumerate(fds):
                        os.dup2(fd, target)
                        os.close(fd)
                    return request
                for fd in fds:
                    os.close(fd)
                pidfd = os.pidfd_open(pid)
                children[pidfd] = (pid, conn)
                sel.register(pidfd, selectors.EVENT_READ, "child")
                conn.sendall(f"{pid}\n".encode())
            else:
                pid, conn = children.pop(key.fd)
                sel.unregister(key.fd)
                os.close(key.fd)
                _, status = os.waitpid(pid, 0)
                with contextlib.suppress(OSError):  # the test stopped listening (it timed out)
                    conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
                conn.close()


if __name__ == "__main__":
    _request = _serve(sys.argv[1])
    # -- in the forked child: become `python -m condvest <argv>` -------------------------------
    import runpy

    os.chdir(_request["cwd"])
    os.environ.clear()
    os.environ.update(_request["env"])
    time.tzset()
    sys.path[0] = os.getcwd()  # what -m puts first
    sys.argv = ["-m", *_request["argv"]]  # runpy sets argv[0] to condvest/__main__.py
    del _request
    runpy.run_module("condvest", run_name="__main__", alter_sys=True)
