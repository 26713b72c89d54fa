"""The sandbox run's init (`marketplace.shared.sandbox`): PID 1 of the run's namespaces.

Root there (the caller's uid outside when not root). It builds the run's root file system on a
tmpfs, pivots into it, starts the code, reaps orphans, and writes the code's wait status and CPU
time to `status` (as PID 1 it cannot die of the code's signal itself). Its exit ends the PID
namespace: the kernel kills what is left.

Not imported: `sandbox` hands this file's text to `python -I -S -c`, so it uses the standard
library only and runs from `main()` under the `__main__` guard.
argv: outer work disk_mb shm_mb uid|- -- command...
"""

import ctypes
import os
import struct
import sys

RDONLY, NOSUID, NODEV, NOEXEC, REMOUNT, BIND, REC, DETACH = 1, 2, 4, 8, 32, 4096, 16384, 2
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "loongarch64": 41}
HOST_DIRECTORIES = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
DEVICES = ("null", "zero", "full", "random", "urandom")
OWN_DIRECTORIES = (
    ("/tmp", 0o1777),
    ("/var", 0o755),
    ("/var/tmp", 0o1777),
    ("/run", 0o755),
    ("/dev", 0o755),
    ("/dev/shm", 0o1777),
    ("/proc", 0o555),
)
libc = ctypes.CDLL(None, use_errno=True)

# The seccomp filter: no new user namespace (unshare or clone with CLONE_NEWUSER), no clone3
# (its flags are out of the filter's reach: ENOSYS makes the C library fall back to clone), and
# no system call of another ABI (i386 or x32 numbers would pass around the checks).
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
SYSCALLS = {"x86_64": (272, 56, 435), "aarch64": (97, 220, 435)}  # unshare, clone, clone3
CLONE_NEWUSER, X32_BIT = 0x10000000, 0x40000000
LD_ABS, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
ALLOW, ERRNO, EPERM, ENOSYS = 0x7FFF0000, 0x00050000, 1, 38
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


def fail(what):
    sys.stderr.write("sandbox-init: " + what + "\n")
    os._exit(1)


def check(result, what):
    if result != 0:
        fail(what + ": " + os.strerror(ctypes.get_errno()))


def encoded(text):
    return None if text is None else text.encode()


def mount(source, target, fstype, flags, data=None):
    args = (encoded(source), encoded(target), encoded(fstype), ctypes.c_ulong(flags), encoded(data))
    check(libc.mount(*args), "mount " + target)


def directory(path, mode):
    os.mkdir(path)
    os.chmod(path, mode)


def build_root(new, disk_mb, shm_mb):
    """The run's root: the host's system directories read-only, its own tmp, run and dev."""
    directory(new, 0o755)
    mount("tmpfs", new, "tmpfs", NOSUID | NODEV, "size=" + disk_mb + "m,nr_inodes=16384,mode=755")
    for name in HOST_DIRECTORIES:
        if os.path.islink("/" + name):
            os.symlink(os.readlink("/" + name), new + "/" + name)
        elif os.path.isdir("/" + name):
            directory(new + "/" + name, 0o755)
            mount("/" + name, new + "/" + name, None, BIND | REC)
            mount(None, new + "/" + name, None, REMOUNT | BIND | RDONLY | NOSUID | NODEV)
    for path, mode in OWN_DIRECTORIES:
        directory(new + path, mode)
    os.symlink("/run", new + "/var/run")
    shm = "size=" + shm_mb + "m,nr_inodes=1024,mode=1777"
    mount("tmpfs", new + "/dev/shm", "tmpfs", NOSUID | NODEV | NOEXEC, shm)
    for name in DEVICES:
        open(new + "/dev/" + name, "w").close()
        mount("/dev/" + name, new + "/dev/" + name, None, BIND)
    for number, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink("/proc/self/fd/" + str(number), new + "/dev/" + name)
    os.symlink("/proc/self/fd", new + "/dev/fd")
    # Optional: a proc of the run's own PID namespace (refused in a user namespace when the
    # host's /proc is partly covered, as in some containers). Python does not need it.
    proc_flags = ctypes.c_ulong(NOSUID | NODEV | NOEXEC)
    libc.mount(b"proc", (new + "/proc").encode(), b"proc", proc_flags, None)


def place_code(new, work, code, uid):
    """The code as `main.py` in the run's working directory, owned by the run's uid."""
    os.makedirs(new + work, mode=0o711)
    os.chmod(new + work, 0o700)
    with open(new + work + "/main.py", "wb") as script:
        script.write(code)
    if uid != "-":
        os.chown(new + work, int(uid), int(uid))
        os.chown(new + work + "/main.py", int(uid), int(uid))


def pivot(new):
    """Makes `new` the root and lets go of the host's."""
    os.chdir(new)
    if os.uname().machine not in PIVOT_ROOT:
        fail("no pivot_root system call number for " + os.uname().machine)
    check(libc.syscall(ctypes.c_long(PIVOT_ROOT[os.uname().machine]), b".", b"."), "pivot_root")
    check(libc.umount2(b".", DETACH), "unmount the host's root")


def seccomp_program(machine):
    """The filter as BPF instructions (code, jump if true, jump if false, constant)."""
    unshare, clone, clone3 = SYSCALLS[machine]
    return [
        (LD_ABS, 0, 0, 4),  # the ABI
        (JEQ, 1, 0, AUDIT_ARCH[machine]),
        (RET, 0, 0, ERRNO | ENOSYS),
        (LD_ABS, 0, 0, 0),  # the system call's number
        (JGE, 0, 1, X32_BIT),
        (RET, 0, 0, ERRNO | ENOSYS),
        (JEQ, 0, 1, clone3),
        (RET, 0, 0, ERRNO | ENOSYS),
        (JEQ, 1, 0, unshare),
        (JEQ, 0, 3, clone),
        (LD_ABS, 0, 0, 16),  # its first argument's low half: the flags of both
        (JSET, 0, 1, CLONE_NEWUSER),
        (RET, 0, 0, ERRNO | EPERM),
        (RET, 0, 0, ALLOW),
    ]


def forbid_user_namespaces():
    """Installs the filter on this process and all it starts (no way to remove it)."""
    machine = os.uname().machine
    if machine not in SYSCALLS:
        fail("no seccomp filter for " + machine)
    code = b"".join(struct.pack("HBBI", *step) for step in seccomp_program(machine))
    steps = ctypes.create_string_buffer(code)
    program = struct.pack("HxxxxxxP", len(code) // 8, ctypes.addressof(steps))
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, program, 0, 0), "seccomp")


def run(command, status):
    """Starts the command, reaps every process until it ends, writes how it ended."""
    child = os.fork()
    if child == 0:
        try:
            forbid_user_namespaces()
            os.execv(command[0], command)
        except OSError as error:
            fail("cannot run " + command[0] + ": " + error.strerror)
    while True:
        pid, wait_status, usage = os.wait4(-1, 0)
        if pid == child:
            os.write(status, b"%d %f\n" % (wait_status, usage.ru_utime + usage.ru_stime))
            os._exit(0)


def main():
    outer, work, disk_mb, shm_mb, uid = sys.argv[1:6]
    command = sys.argv[7:]
    with open(outer + "/main.py", "rb") as source:
        code = source.read()
    status = os.open(outer + "/status", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    new = outer + "/root"
    build_root(new, disk_mb, shm_mb)
    place_code(new, work, code, uid)
    pivot(new)
    os.chdir(work)
    run(command, status)


if __name__ == "__main__":
    main()
