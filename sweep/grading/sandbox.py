"""A graded pipeline's process, seen from the grader: started fresh, alone in a working folder, limited, stoppable.

Children are forked by the grader's process factory (``sweep.grading.zygote``, a fresh process that has only
imported the libraries). Each child (``sweep.grading.child``) gets a scrubbed environment (no database URL, none of the grader's
variables), a new empty working folder as its home and cwd, a memory limit (address space, on a CPU; a GPU
driver needs more address space than memory, so there the resident size is checked between requests), a
wall-clock limit on each request, and, when the grader runs as root, a group id of its own and the ``nobody`` user
where that user can run sweep here, else root without any capability; the grader makes itself non-dumpable, so neither can read its
process (environment, memory). It dies with the grader (PR_SET_PDEATHSIG). While the other side of a pair is timed it
is stopped (SIGSTOP), so no thread of it can load the CPU or queue GPU work during the other's generation; a process
it starts that leaves its process group (a new session, a daemon) is found by its group id, stopped with it, and fails
the evaluation after the request that started it. Its output is captured to a file and cut.
"""

from __future__ import annotations

import ctypes
import grp
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sweep.grading import wire

log = logging.getLogger(__name__)

OUTPUT_LIMIT = 4000
"""Characters of a child's output kept with its evaluation."""
_KEPT_VARIABLES = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH",
                   "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "HF_HUB_OFFLINE", "HF_HOME", "TORCH_HOME", "SWEEP_CPU_THREADS")


_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_DUMPABLE = 4


class ChildError(Exception):
    """The child crashed, hung past its limit, exceeded its memory, or answered with an error."""


_NOBODY: dict[bool, tuple[int, int] | None] = {}


def _nobody(cuda: bool = False) -> tuple[int, int] | None:
    """The ``nobody`` user, when the grader runs as root and that user can run sweep's child here (it must read
    the Python installation and sweep's package); else None, and the child runs as the grader's user."""
    if cuda in _NOBODY:
        return _NOBODY[cuda]
    found = None
    if os.geteuid() == 0:
        try:
            entry = pwd.getpwnam("nobody")
        except KeyError:
            entry = None
        if entry is not None:
            user = (entry.pw_uid, entry.pw_gid)

            def become() -> None:
                os.setgid(user[1])
                os.setgroups([])
                os.setuid(user[0])

            try:
                check = "import sweep.grading.child" + ("; import torch; assert torch.cuda.is_available()" if cuda else "")
                probe = subprocess.run([sys.executable, "-c", check], cwd="/", check=False,
                                       env={k: os.environ[k] for k in ("PATH", "PYTHONPATH") if k in os.environ},
                                       preexec_fn=become,
                                       capture_output=True, timeout=60)
                found = user if probe.returncode == 0 else None
            except (OSError, subprocess.SubprocessError):  # the interpreter itself is out of its reach
                found = None
    _NOBODY[cuda] = found
    return found


_IDS_FROM = 1_900_000_000
"""Graded children run with a group id from here on, one of their own each (no group needs to exist for it)."""


def _graded_group() -> int | None:
    """A group id of this child's own where the grader runs as root (None elsewhere). A process keeps its group
    whatever session or process group it moves to, and cannot change it without the capability it lacks, so the
    grader finds, stops and kills every process a solution starts by it."""
    if os.geteuid() != 0:
        return None
    taken = {group for _, group in _processes()}
    while True:
        gid = _IDS_FROM + secrets.randbelow(100_000_000)
        if gid in taken:
            continue
        try:
            grp.getgrgid(gid)  # a group of this machine's (or its directory's): its files are not the child's to read
        except KeyError:
            return gid


def _processes() -> list[tuple[int, int]]:
    """(pid, real group id) of every live process on this machine (those that end meanwhile, and zombies, are left
    out)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if fields.get("State", "").strip().startswith("Z"):
                continue
            out.append((int(entry), int(fields["Gid"].split()[0])))
        except (OSError, KeyError, ValueError, IndexError):
            continue
    return out


_SIGNAL_PASSES = 20
"""Scans a stop makes before it gives up on a process that keeps escaping it (one that forks in a loop)."""


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (state, parent pid, ...); empty where it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _state(pid: int) -> str:
    """A process's state letter (``T``: stopped; ``Z``: zombie; empty: gone)."""
    fields = _stat(pid)
    return fields[0] if fields else ""


def _parents() -> dict[int, int]:
    """pid → parent pid of every process on this machine."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and len(fields := _stat(int(entry))) > 1 and fields[1].isdigit():
            out[int(entry)] = int(fields[1])
    return out


class Zygote:
    """``sweep.grading.zygote``: a fresh process with the libraries imported, forking each child."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        env = {k: os.environ[k] for k in _KEPT_VARIABLES if k in os.environ}
        env.update({"PYTHONDONTWRITEBYTECODE": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"})
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sweep.grading.zygote", str(theirs.fileno())], cwd="/", env=env,
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, pass_fds=(theirs.fileno(),))
        theirs.close()
        self.sock = ours
        self._reader = ours.makefile("rb")
        ready = self._reader.readline()
        if b"ready" not in ready:
            self._log.seek(0)
            tail = " ".join(self._log.read().decode(errors="replace").split())[-300:]
            raise ChildError(f"the grader's process factory did not start: {tail}")

    def spawn(self, spec: dict[str, object], fds: list[int]) -> int:
        socket.send_fds(self.sock, [json.dumps(spec).encode()], fds)
        reply = self._reader.readline()
        if not reply:
            raise ChildError("the grader's process factory has ended")
        return int(json.loads(reply)["pid"])

    def close(self) -> None:
        self.sock.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


_ZYGOTE: list[Zygote] = []


def zygote() -> Zygote:
    """This grader's process factory, started on first use (it sets the grader itself non-dumpable)."""
    if not _ZYGOTE or _ZYGOTE[0].process.poll() is not None:
        _LIBC.prctl(_PR_SET_DUMPABLE, 0)  # the grader's /proc files (environ, memory) need CAP_SYS_PTRACE now
        _ZYGOTE[:] = [Zygote()]
    return _ZYGOTE[0]


def close_zygote() -> None:
    if _ZYGOTE:
        _ZYGOTE.pop().close()


class Child:
    """One graded pipeline in its own process (see the module docstring)."""

    def __init__(self, device: str, *, memory_bytes: int, request_seconds: float, label: str,
                 threads: int | None = None, cpus: list[int] | None = None) -> None:
        self.device, self.request_seconds, self.label = device, request_seconds, label
        self.memory_bytes = memory_bytes
        self.folder = Path(tempfile.mkdtemp(prefix=f"sweep-grade-{label}-"))
        self.log_path = self.folder / "output.log"
        user = self.user = _nobody(device.startswith("cuda"))
        self.group = _graded_group()
        if user is not None:
            os.chown(self.folder, *user)
        env = {k: os.environ[k] for k in _KEPT_VARIABLES if k in os.environ}
        env.update({"HOME": str(self.folder), "TMPDIR": str(self.folder), "SWEEP_DEVICE": device,
                    "PYTHONDONTWRITEBYTECODE": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"})
        if threads is not None:
            env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in close())
        spec = {"cwd": str(self.folder), "env": env, "user": user[0] if user else None, "group": self.group,
                "address_space": memory_bytes if device.split(":")[0] == "cpu" else None, "cpus": cpus}
        try:
            if device.split(":")[0] == "cpu":
                self.pid = zygote().spawn(spec, [to_child_r, from_child_w, self._log.fileno()])
            else:
                _LIBC.prctl(_PR_SET_DUMPABLE, 0)
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "sweep.grading.zygote", "--once", json.dumps(spec), str(to_child_r),
                     str(from_child_w)], cwd=self.folder, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                    stderr=subprocess.STDOUT, pass_fds=(to_child_r, from_child_w))
                self.pid = self._process.pid
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.stopped = False
        self.last_seconds = 0.0
        self.last_waited: float | None = None

    def alive(self) -> bool:
        process = getattr(self, "_process", None)
        if process is not None:
            return process.poll() is None
        return _state(self.pid) not in ("Z", "")

    def load_file(self, path: Path, seconds: float, key: int | None) -> dict[str, object]:
        """Copy a pipeline file into the child's folder and load it there: what the child observed."""
        copy = self.folder / "solution.py"
        shutil.copyfile(path, copy)
        if self.user is not None:
            os.chown(copy, *self.user)
        request: dict[str, object] = {"op": "load", "path": str(copy)}
        if key is not None:
            request["key"] = key
        reply, _ = self.request(request, seconds)
        return dict(reply["observed"])  # type: ignore[call-overload]

    # -- requests ---------------------------------------------------------------------------------------------

    def request(self, header: dict[str, object], seconds: float | None = None) -> tuple[dict[str, object], np.ndarray | None]:
        """Send one request and wait for its reply, at most ``seconds`` (default: the request limit).

        ``last_seconds`` is the time from sending the request to its first reply; ``last_waited`` the part of it
        the child's threads spent runnable, waiting for a CPU that something else held (None where the kernel does
        not say). A generation is answered twice:
        first as soon as its images are finished (synchronised, in the child's memory), then with the images, so
        that their transfer (12 MiB an image at 1024²) is the grader's cost, not a part of either side's time."""
        self.resume()
        limit = seconds or self.request_seconds
        try:
            waited = self.cpu_wait()
            began = time.perf_counter()  # the grader's clock: the child cannot reach it
            wire.send(self._to_child, header)
            deadline = time.monotonic() + limit
            reply, array = wire.receive(self._from_child, deadline)
            self.last_seconds = time.perf_counter() - began
            after = self.cpu_wait()
            self.last_waited = max(0.0, after - waited) if waited is not None and after is not None else None
            if header.get("op") == "generate" and reply.get("ok") and reply.get("generated"):
                reply, array = wire.receive(self._from_child, deadline)
        except (wire.WireError, OSError) as exc:
            raise ChildError(self._failure(str(exc), limit)) from None
        if not reply.get("ok"):
            raise ChildError(str(reply.get("error", "an error without a message"))[:500])
        self.check_memory()
        self.check_escapes()
        return reply, array

    def cpu_wait(self) -> float | None:
        """Seconds the child's threads have spent runnable but waiting for a CPU (the scheduler's ``run_delay``,
        /proc/PID/task/TID/schedstat): the share of a timed call that another process took from it. Read by the
        grader, outside the timed window; None where the kernel keeps no such count."""
        total = 0
        try:
            threads = os.listdir(f"/proc/{self.pid}/task")
        except OSError:
            return None
        for tid in threads:
            try:
                with open(f"/proc/{self.pid}/task/{tid}/schedstat", encoding="ascii") as f:
                    total += int(f.read().split()[1])
            except FileNotFoundError:
                continue  # a thread that ended meanwhile
            except (OSError, ValueError, IndexError):
                return None
        return total / 1e9

    def _failure(self, what: str, seconds: float) -> str:
        if "time limit" in what:
            try:
                os.kill(self.pid, signal.SIGUSR1)  # its threads' stacks into its output
                time.sleep(0.5)
            except ProcessLookupError:
                pass
            self.kill()
            return f"no answer within the {seconds:g} s limit (killed)"
        for _ in range(50):
            if not self.alive():
                break
            time.sleep(0.1)
        self.kill()
        output = self.output()
        reason = "ran out of memory" if "MemoryError" in output or "out of memory" in output else "ended"
        tail = " ".join(output.split())[-300:]
        return f"the process {reason} ({what})" + (f": {tail}" if tail else "")

    def check_memory(self) -> None:
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
                rss_kib = next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        except OSError:
            return
        if rss_kib * 1024 > self.memory_bytes:
            self.kill()
            raise ChildError(f"used {rss_kib / 2**20:.1f} GiB of memory, over the {self.memory_bytes / 2**30:.1f} GiB limit")

    # -- process control ---------------------------------------------------------------------------------------

    def processes(self) -> list[int]:
        """Every process of this child: those of its own group id (wherever they moved: another session, another
        process group, an orphan), else (a grader not run as root) its descendants, where a process that left its
        parent is out of sight."""
        if self.group is not None:
            return [pid for pid, group in _processes() if group == self.group]
        parents, family = _parents(), {self.pid}
        grown = True
        while grown:
            found = {pid for pid, parent in parents.items() if parent in family} - family
            family |= found
            grown = bool(found)
        return sorted(pid for pid in family if pid in parents)

    def escaped(self) -> list[int]:
        """Its processes outside its process group: out of reach of the group's stop, so they could load the CPU
        or the GPU while the other side is timed."""
        out = []
        for pid in self.processes():
            try:
                if os.getpgid(pid) != self.pid:
                    out.append(pid)
            except ProcessLookupError:
                continue
        return out

    def _signal_all(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the group, and to each of its processes, wherever they moved."""
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass
        for pid in self.processes():  # whatever left the group
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                continue

    def check_escapes(self) -> None:
        """ChildError (after killing them all) where a process of this child left its process group."""
        escaped = self.escaped()
        if escaped:
            self.kill()
            raise ChildError(f"a process it started left its process group (pid {escaped[0]}{' and more' if len(escaped) > 1 else ''}): "
                             "it could run on while the other side is timed; killed")

    def stop(self) -> None:
        """Freeze the whole process group, and any of its processes that left it (while the other side of a pair is
        timed)."""
        if not self.stopped and self.alive():
            # scan after scan, until every one is stopped: a process that forks in a loop has a new pid by the time
            # one scan's signal arrives
            for _ in range(_SIGNAL_PASSES):
                self._signal_all(signal.SIGSTOP)
                time.sleep(0.002)
                if all(_state(pid) in ("T", "t", "") for pid in self.processes()):
                    break
            self.stopped = True

    def resume(self) -> None:
        if self.stopped and self.alive():
            self._signal_all(signal.SIGCONT)
        self.stopped = False

    def kill(self) -> None:
        for _ in range(100):
            self._signal_all(signal.SIGKILL)
            if not self.alive() and not self.processes():
                return
            time.sleep(0.05)
        log.warning("graded child %s: processes %s outlived every SIGKILL", self.label, self.processes())

    def output(self) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return text if len(text) <= OUTPUT_LIMIT else text[: OUTPUT_LIMIT // 2] + "\n[...]\n" + text[-OUTPUT_LIMIT // 2:]

    def close(self) -> str:
        """End the process and remove its folder; its (cut) output."""
        if self.alive():
            try:
                self.resume()
                wire.send(self._to_child, {"op": "exit"})
                for _ in range(100):
                    if not self.alive():
                        break
                    time.sleep(0.05)
            except OSError:
                pass
        self.kill()
        text = self.output()
        self._log.close()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.folder, ignore_errors=True)
        return text
