"""The grader's process factory: ``python -m sweep.grading.zygote SOCKET_FD`` (or ``--once SPEC READ WRITE``).

Started fresh by the grader with a scrubbed environment, it imports torch, diffusers and sweep once and then
only forks: each graded pipeline is a fork of this pristine process (no solution code has run in it, it holds
none of the grader's state, CUDA is not initialised), made into a child of its own before it loads anything —
new session, working folder, environment, limits, user or no capabilities — so it starts in well under a second
instead of re-importing the libraries for every solution. It dies with the grader, and its children with it.
On a GPU every child is instead a new interpreter (``--once``): importing diffusers touches CUDA, and CUDA cannot
be initialised again in a fork.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import socket
import sys

_LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38


def become_child(spec: dict[str, object]) -> None:
    """In a fresh fork: what makes it a graded child (see sweep.grading.sandbox)."""
    parent = os.getppid()
    os.setsid()  # its own process group: stopped, resumed and killed as a whole
    os.chdir(str(spec["cwd"]))
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in dict(spec["env"]).items()})  # type: ignore[call-overload]
    cpus = spec.get("cpus")
    if isinstance(cpus, list) and cpus:  # pinned where asked (scripts/gpu_grading_placement.py compares placements)
        os.sched_setaffinity(0, [int(c) for c in cpus])
    limit = spec.get("address_space")
    if isinstance(limit, int):
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    group, user = spec.get("group"), spec.get("user")
    if isinstance(group, int):  # a group of its own: every process it starts keeps it (see sweep.grading.sandbox)
        os.setgroups([])
        os.setgid(group)
    if isinstance(user, int):
        os.setuid(user)
    elif os.geteuid() == 0:  # root that cannot become nobody here: root without capabilities
        for cap in range(64):
            _LIBC.prctl(PR_CAPBSET_DROP, cap)
        _drop_effective_capabilities()
    _LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    # die with the zygote, which dies with the grader; set last: a change of user or group clears it (a grader
    # killed mid-evaluation left its children stopped and orphaned, for good, while it was set first)
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _drop_effective_capabilities() -> None:
    """Clear the effective, permitted and inheritable sets (capset v3), as an exec would with an empty bounding set."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    _LIBC.syscall(126 if os.uname().machine == "x86_64" else 91, header, data)  # SYS_capset


def serve(sock: socket.socket) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel; the grader watches their pids
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 1 << 16, 4)
        except OSError:
            return
        if not message:
            return
        spec = json.loads(message)
        pid = os.fork()
        if pid == 0:  # the graded child
            code = 1
            try:
                sock.close()
                read_fd, write_fd, log_fd = fds
                os.dup2(log_fd, 1)
                os.dup2(log_fd, 2)
                os.close(log_fd)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                become_child(spec)
                sys.stdout = os.fdopen(1, "w", buffering=1)
                sys.stderr = os.fdopen(2, "w", buffering=1)
                from sweep.grading import child

                code = child.main([str(read_fd), str(write_fd)])
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        sock.sendall(json.dumps({"pid": pid}).encode() + b"\n")


def main(argv: list[str]) -> int:
    if argv[0] == "--once":  # one child, exec'd fresh (CUDA cannot be used in a fork of a process that touched it)
        spec, read_fd, write_fd = json.loads(argv[1]), argv[2], argv[3]
        become_child(spec)
        from sweep.grading import child

        return child.main([read_fd, write_fd])
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    sock = socket.socket(fileno=int(argv[0]))
    # isort: off  (sweep._compat must come before diffusers: it lets torchvision's transforms import on a CPU torch)
    import sweep._compat  # noqa: F401, I001
    import numpy  # noqa: F401
    import torch  # noqa: F401
    from diffusers import PixArtAlphaPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline  # noqa: F401

    import sweep.grading.child  # noqa: F401
    import sweep.pipelines.loader  # noqa: F401
    # isort: on

    sock.sendall(b'{"ready": true}\n')
    serve(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
