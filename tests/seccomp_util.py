"""Install a seccomp filter that makes one syscall fail with a chosen errno (x86_64/aarch64).

Used to prove that beneathd fails closed when openat2(2) is missing (ENOSYS) or blocked
by a seccomp policy (EPERM). Import and call ``deny_syscall`` in a child process only.
"""

from __future__ import annotations

import ctypes
import platform

SYS_OPENAT2 = 437  # the same number on x86_64 and aarch64 (unified syscall table)
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SECCOMP_RET_ERRNO = 0x00050000
_SECCOMP_RET_ALLOW = 0x7FFF0000


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def deny_syscall(nr: int, err: int) -> None:
    """From now on (this thread and its children), syscall ``nr`` fails with ``err``."""
    if platform.machine() not in ("x86_64", "aarch64"):
        raise OSError("seccomp helper supports x86_64 and aarch64 only")
    prog = (_SockFilter * 4)(
        _SockFilter(0x20, 0, 0, 0),  # A = seccomp_data.nr
        _SockFilter(0x15, 0, 1, nr),  # if A == nr: next, else skip one
        _SockFilter(0x06, 0, 0, _SECCOMP_RET_ERRNO | (err & 0xFFFF)),
        _SockFilter(0x06, 0, 0, _SECCOMP_RET_ALLOW),
    )
    fprog = _SockFprog(4, prog)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(NO_NEW_PRIVS)")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(SECCOMP)")
