"""Launcher for the openai-trigger native binary.

Dify runs plugins as Python: the plugin daemon starts `<venv>/bin/python -m main` in the extracted
package (INSTALL_METHOD=local, the protocol on stdin/stdout), remote debugging sets
INSTALL_METHOD=remote, and Dify Cloud's serverless runtime sets INSTALL_METHOD=serverless (or the
older aws_lambda) and talks HTTP. This file does no plugin work itself.

Where the binary comes from, in order:
1. the wheel `hookwright-openai-trigger` that requirements.txt pins: pip/uv install it into the
   plugin's venv like any compiled dependency, as `<venv>/bin/openai-trigger` (the Marketplace
   package);
2. `bin/openai-trigger-linux-<arch>` inside the package (the self-contained offline package).

For local and remote, this process is replaced by the binary (os.execv), which keeps its PID and its
stdin, stdout and stderr. For serverless, serverless.py serves the HTTP contract with Flask in front
of the binary (see there).

Nothing is ever written to stdout in local mode: stdout belongs to the protocol. Failures go to
stderr, with exit status 1.
"""

import os
import platform
import sys
import sysconfig
import tempfile

WHEEL = "hookwright-openai-trigger"
BINARY_NAME = "openai-trigger"
BUNDLED_PREFIX = "openai-trigger-linux-"
UNLINK_ENV = "OPENAI_TRIGGER_UNLINK"

# platform.machine() spellings (Linux, BSD/macOS) mapped to the arch names in the package.
ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
# ELF e_machine of each arch, to refuse a binary built for another machine with a clear message.
ELF_MACHINES = {"amd64": 62, "arm64": 183}

# MFD_EXEC (Linux 6.3+) asks for an executable memfd even where vm.memfd_noexec=1 makes them
# non-executable by default; older kernels reject the flag, so 0 is tried next. MFD_CLOEXEC is
# left out on purpose: an interpreter started through a script's #! line reads the script via
# /proc/self/fd/N after the exec, so the descriptor has to survive it.
MFD_EXEC = getattr(os, "MFD_EXEC", 0x10)


def fail(message):
    sys.stderr.write("openai-trigger launcher: " + message + "\n")
    sys.stderr.flush()
    sys.exit(1)


def this_arch():
    machine = platform.machine()
    arch = ARCHES.get(machine.lower())
    if arch is None:
        fail(
            "unsupported machine %r: openai-trigger ships linux amd64 (x86_64) and arm64 (aarch64) binaries"
            % machine
        )
    return arch


def elf_machine(path):
    """The ELF e_machine of `path`, or None when it is not a 64-bit little-endian ELF file."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        return None
    return int.from_bytes(head[18:20], "little")


def installed_binary():
    """The binary the wheel installed into this environment's scripts directory, if any."""
    path = os.path.join(sysconfig.get_path("scripts"), BINARY_NAME)
    return path if os.path.isfile(path) else None


def bundled_binary(arch):
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "bin", BUNDLED_PREFIX + arch)
    return path if os.path.isfile(path) else None


def find_binary():
    """(path, bundled): the binary for this machine, or a clear failure saying what is missing."""
    arch = this_arch()
    for path, bundled in ((installed_binary(), False), (bundled_binary(arch), True)):
        if path is None:
            continue
        machine = elf_machine(path)
        # An ELF for another machine is a wheel or package for another platform; say so, rather than
        # let exec fail with "Exec format error".
        if machine is not None and machine != ELF_MACHINES[arch]:
            fail(
                "%s is not a Linux %s binary (ELF machine %r): reinstall the plugin so that pip/uv picks the "
                "wheel for this machine (%s, %s)"
                % (path, arch, machine, platform.machine(), " ".join(platform.libc_ver()) or "unknown libc")
            )
        return path, bundled
    fail(
        "the native binary is not installed: %s is missing from %s (requirements.txt pins the wheel %s; "
        "its install failed or no wheel exists for this platform: %s, Python %s), and this package bundles "
        "no bin/%s%s"
        % (
            BINARY_NAME,
            sysconfig.get_path("scripts"),
            WHEEL,
            platform.machine(),
            platform.python_version(),
            BUNDLED_PREFIX,
            arch,
        )
    )


def exec_binary(path, argv, errors):
    """Replaces this process with `path`; returns only if the exec failed."""
    try:
        os.execv(path, argv)
    except OSError as err:
        errors.append("%s: %s" % (path, err.strerror or err))


def temp_dirs():
    seen = set()
    for candidate in (os.environ.get("TMPDIR"), "/tmp", "/dev/shm"):
        if not candidate or not os.path.isdir(candidate):
            continue
        real = os.path.realpath(candidate)
        if real not in seen:
            seen.add(real)
            yield candidate


def copy_to(directory, data):
    """Writes `data` to a new private executable file in `directory`; returns its path."""
    fd, path = tempfile.mkstemp(prefix="openai-trigger-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(path, 0o700)
    except OSError:
        os.unlink(path)
        raise
    return path


def exec_from_memfd(data, argv, errors):
    for flags in (MFD_EXEC, 0):
        try:
            fd = os.memfd_create("openai-trigger", flags)
        except OSError as err:
            errors.append("memfd_create(flags=%#x): %s" % (flags, err.strerror or err))
            continue
        try:
            write_all(fd, data)
        except OSError as err:
            errors.append("memfd write: %s" % (err.strerror or err))
        else:
            exec_binary("/proc/self/fd/%d" % fd, argv, errors)
        os.close(fd)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def exec_bundled(path, argv):
    """The offline package's binary: the daemon extracts every file 0644 and the package directory
    may be mounted noexec, so restore the exec bit, else run a private copy in a temporary directory
    (which the binary deletes once running), else an anonymous memory file."""
    errors = []
    try:
        os.chmod(path, 0o755)
    except OSError as err:
        # Not fatal: the file may already be executable (a read-only but exec-able mount).
        errors.append("chmod %s: %s" % (path, err.strerror or err))
    exec_binary(path, argv, errors)

    try:
        with open(path, "rb") as source:
            data = source.read()
    except OSError as err:
        fail("cannot read %s: %s (%s)" % (path, err.strerror or err, "; ".join(errors)))

    for directory in temp_dirs():
        try:
            copy = copy_to(directory, data)
        except OSError as err:
            errors.append("copy to %s: %s" % (directory, err.strerror or err))
            continue
        os.environ[UNLINK_ENV] = copy
        exec_binary(copy, argv, errors)
        del os.environ[UNLINK_ENV]
        try:
            os.unlink(copy)
        except OSError:
            pass

    if hasattr(os, "memfd_create"):
        exec_from_memfd(data, argv, errors)
    else:
        errors.append("memfd_create: not available")
    fail("cannot start the native plugin binary: " + "; ".join(errors))


def main():
    path, bundled = find_binary()
    # Set only for a temporary copy below; never pass on one from the environment.
    os.environ.pop(UNLINK_ENV, None)
    method = os.environ.get("INSTALL_METHOD", "").strip().lower()
    if method in ("serverless", "aws_lambda"):
        import serverless

        serverless.serve(path)
        return
    argv = [path] + sys.argv[1:]
    if bundled:
        exec_bundled(path, argv)
    errors = []
    exec_binary(path, argv, errors)
    fail("cannot start the native plugin binary: " + "; ".join(errors))


if __name__ == "__main__":
    main()
