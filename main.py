"""Launcher for the openai-trigger native binary.

The Dify plugin daemon only runs Python plugins: it starts `<venv>/bin/python -m main` in the
extracted package, with the protocol on stdin/stdout. This file does no plugin work. It replaces
itself with the static binary for this machine (`bin/openai-trigger-linux-<arch>`), so the
binary keeps this process's PID and its stdin, stdout and stderr.

Where the binary can be executed from, in order:
1. in place, after restoring its exec bit (the daemon extracts every file as 0644);
2. a private copy in $TMPDIR, /tmp or /dev/shm, when the package directory is mounted noexec.
   The copy's path is passed in OPENAI_TRIGGER_UNLINK so the binary can delete it once running;
3. an anonymous memory file (memfd), when every temporary directory is noexec too.

Nothing is ever written to stdout: stdout belongs to the protocol. Failures go to stderr, with
exit status 1.
"""

import os
import platform
import sys
import tempfile

BINARY_PREFIX = "openai-trigger-linux-"
UNLINK_ENV = "OPENAI_TRIGGER_UNLINK"

# platform.machine() spellings (Linux, BSD/macOS) mapped to the arch names in the package.
ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}

# MFD_EXEC (Linux 6.3+) asks for an executable memfd even where vm.memfd_noexec=1 makes them
# non-executable by default; older kernels reject the flag, so 0 is tried next. MFD_CLOEXEC is
# left out on purpose: an interpreter started through a script's #! line reads the script via
# /proc/self/fd/N after the exec, so the descriptor has to survive it.
MFD_EXEC = getattr(os, "MFD_EXEC", 0x10)


def fail(message):
    sys.stderr.write("openai-trigger launcher: " + message + "\n")
    sys.stderr.flush()
    sys.exit(1)


def binary_path():
    machine = platform.machine()
    arch = ARCHES.get(machine.lower())
    if arch is None:
        fail(
            "unsupported machine %r: this package ships linux amd64 (x86_64) and arm64 (aarch64) binaries"
            % machine
        )
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "bin", BINARY_PREFIX + arch)


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


def main():
    path = binary_path()
    if not os.path.isfile(path):
        fail("%s is missing: the package has no binary for this machine" % path)
    argv = [path] + sys.argv[1:]
    errors = []
    # Set only for a temporary copy below; never pass on one from the environment.
    os.environ.pop(UNLINK_ENV, None)

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


if __name__ == "__main__":
    main()
