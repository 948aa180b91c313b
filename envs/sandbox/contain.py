"""Kernel-enforced containment of a sandbox child, applied by the child itself after it imported our
own modules and before it reads a byte of the package.

Layers, in the order they go on:
- lifetime: ``PR_SET_PDEATHSIG`` (the child dies with the thread that started it; see ``remote``);
- rlimits: address space, file size, open files, no core dumps;
- a new network namespace (only loopback, and down) where the kernel lets us make one;
- Landlock: read-only system, interpreter and our code; read-write only in the private workspace;
- an unprivileged uid (``nobody``) whenever we are root, with a process-count limit (keeping only
  CAP_DAC_READ_SEARCH where the interpreter lives below an unsearchable directory, e.g. /root);
- seccomp (libseccomp): no new processes (threads only), no exec, no sockets, no namespace changes,
  no ptrace, no mounts, no io_uring, no signals to other processes, no uid changes.

The Python audit hook is gone: everything that matters is refused by the kernel, so ``ctypes``,
``_posixsubprocess``, ``os.open(dir_fd=...)`` or SQLite's own file access reach the same walls.
"""
from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import sys
from pathlib import Path

try:  # imported now, while every file is still readable (the interpreter may live under /root)
    import ctypes.util  # noqa: F401  (pyseccomp finds libseccomp through it)
    import landlock
except ImportError:  # pragma: no cover - reported by probe()
    landlock = None
try:
    import pyseccomp
except (ImportError, OSError):  # pragma: no cover - libseccomp missing
    pyseccomp = None

NOBODY = 65534
CLONE_NEWNET = 0x40000000
CLONE_THREAD = 0x00010000
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_KEEPCAPS = 8
CAP_DAC_READ_SEARCH = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# Refused outright (EPERM). Anything an escape needs: processes, exec, the network, other
# namespaces, other processes' memory, kernel facilities that bypass the filter (io_uring, bpf).
DENIED_SYSCALLS = (
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4", "sendto", "sendmsg", "sendmmsg",
    "execve", "execveat", "fork", "vfork", "setns", "unshare", "ptrace", "process_vm_readv", "process_vm_writev",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig",
    "fspick", "mount_setattr", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "keyctl",
    "add_key", "request_key", "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups",
    "setfsuid", "setfsgid", "capset", "pidfd_open", "pidfd_send_signal", "pidfd_getfd", "name_to_handle_at",
    "open_by_handle_at", "mknod", "mknodat", "quotactl", "swapon", "swapoff", "reboot", "sethostname",
    "setdomainname", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "acct", "syslog", "vhangup",
    "personality", "lookup_dcookie", "fanotify_init", "iopl", "ioperm", "modify_ldt", "memfd_secret",
)


class ContainmentError(RuntimeError):
    """A layer that must be on could not be put on (and weak sandboxes were not allowed)."""


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def die_with_parent(parent_pid: int) -> None:
    if _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise ContainmentError("prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before the line above: go now
        os._exit(70)


def set_limits(memory_mb: int, file_size_mb: int, open_files: int) -> None:
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb * mb, memory_mb * mb))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_mb * mb, file_size_mb * mb))
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def new_network_namespace() -> bool:
    """A fresh network namespace (no interface up): needs CAP_SYS_ADMIN, so only as root."""
    made = _libc().unshare(CLONE_NEWNET) == 0
    ctypes.set_errno(0)  # the landlock bindings read errno after calls that succeeded
    return made


def landlock_paths(readable: list[Path], writable: list[Path]) -> None:
    rs = landlock.Ruleset()
    read = landlock.FSAccess.READ_FILE | landlock.FSAccess.READ_DIR | landlock.FSAccess.EXECUTE
    for path in readable:
        if path.exists():
            rules = read if path.is_dir() else (landlock.FSAccess.READ_FILE | landlock.FSAccess.WRITE_FILE
                                                 if str(path) == "/dev/null" else landlock.FSAccess.READ_FILE)
            rs.allow(path, rules=rules)
    for path in writable:
        rs.allow(path)
    rs.apply()


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _world_readable(path: Path) -> bool:
    """Can any user reach ``path`` (every directory above it searchable by others)?"""
    for p in [path, *path.parents]:
        try:
            if not p.stat().st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def drop_to_nobody(processes: int, keep_read: bool) -> None:
    """Become ``nobody``. ``keep_read``: keep CAP_DAC_READ_SEARCH alone (only where the interpreter
    sits below a directory others cannot search, such as /root): Landlock still decides what may be
    read, and seccomp refuses ``open_by_handle_at``, the one call that capability would add."""
    libc = _libc()
    if keep_read:
        libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    if keep_read:
        bit = 1 << CAP_DAC_READ_SEARCH
        data = (_CapData * 2)(_CapData(bit, bit, 0), _CapData(0, 0, 0))
        if libc.capset(ctypes.byref(_CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)), data) != 0:
            raise ContainmentError("capset failed")
        libc.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0)
    resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))


def seccomp_filter() -> None:
    sc = pyseccomp
    f = sc.SyscallFilter(defaction=sc.ALLOW)
    deny = sc.ERRNO(errno.EPERM)
    for name in DENIED_SYSCALLS:
        try:
            f.add_rule(deny, name)
        except (OSError, ValueError, RuntimeError):
            pass  # a syscall this architecture does not have
    f.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0))   # a new process (threads are fine)
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")                        # libc falls back to clone
    me = os.getpid()
    for name in ("kill", "tgkill"):
        f.add_rule(deny, name, sc.Arg(0, sc.NE, me))                    # only signals to itself
    f.add_rule(deny, "tkill", sc.Arg(0, sc.NE, me))
    f.add_rule(deny, "prctl", sc.Arg(0, sc.EQ, PR_SET_PDEATHSIG))        # it keeps dying with its parent
    f.add_rule(deny, "ioctl", sc.Arg(1, sc.EQ, 0x5412))                  # TIOCSTI: no typing into a terminal
    f.load()


def probe() -> dict[str, bool]:
    """Which layers this machine can give (checked without applying any)."""
    out = {"landlock": False, "seccomp": False}
    try:
        out["landlock"] = landlock.landlock_abi_version() >= 1
    except Exception:
        pass
    try:
        pyseccomp.get_api()
        out["seccomp"] = True
    except Exception:
        pass
    return out


def contain(*, parent_pid: int, readable: list[Path], writable: list[Path], memory_mb: int, file_size_mb: int,
            open_files: int, processes: int, allow_weak: bool) -> list[str]:
    """Put every layer on; the layers that are on, by name. Raises ContainmentError when Landlock or
    seccomp is unavailable and ``allow_weak`` is not set."""
    layers = []
    die_with_parent(parent_pid)
    layers.append("dies with its parent")
    set_limits(memory_mb, file_size_mb, open_files)
    layers.append("rlimits")
    if new_network_namespace():
        layers.append("network namespace")
    try:
        landlock_paths(readable, writable)
        layers.append("landlock")
    except Exception as exc:
        if not allow_weak:
            raise ContainmentError(f"Landlock is unavailable here ({exc})") from None
        _libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if os.geteuid() == 0:
        keep_read = not all(_world_readable(p) for p in readable)
        drop_to_nobody(processes, keep_read)
        layers.append("uid nobody" + (" (reads as root where Landlock allows: the interpreter is not world-readable)"
                                      if keep_read else ""))
    try:
        seccomp_filter()
        layers.append("seccomp")
    except Exception as exc:
        if not allow_weak:
            raise ContainmentError(f"seccomp is unavailable here ({exc})") from None
    return layers


def system_readable() -> list[Path]:
    """What any child may read: the interpreter and its libraries, shared libraries, time zones."""
    paths = {Path(p) for p in sys.path if p and Path(p).exists()}
    paths |= {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix), Path(sys.executable).resolve().parent}
    paths |= {Path(__file__).resolve().parents[1]}  # envfactory.envs: our runtime and the bundled catalog
    paths |= {Path(p) for p in ("/usr/lib", "/lib", "/lib64", "/usr/lib64", "/usr/local/lib", "/usr/share/zoneinfo",
                                "/dev/null", "/dev/urandom")}
    return sorted(p for p in paths if p.exists())
