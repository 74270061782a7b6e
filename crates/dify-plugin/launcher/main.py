"""Launcher for the native Dify plugin binary @BINARY@ (written by dify_plugin::package).

The Dify plugin daemon runs every plugin as Python: `<venv>/bin/python -m main` in the extracted
package, with the protocol on stdin/stdout (INSTALL_METHOD=local) or a TCP connection to a debugging
daemon (INSTALL_METHOD=remote). This file does no plugin work: it replaces itself with the binary
bin/@BINARY@-linux-<arch> of this package (os.execv keeps the PID and the standard streams). The
daemon extracts every file 0644 and the package directory may be mounted noexec, so the exec bit is
restored first, and an anonymous memory file is the fallback.

Nothing is written to stdout: it belongs to the protocol. Failures go to stderr, exit status 1.
"""

import os
import platform
import sys

BINARY = "@BINARY@"
# platform.machine() spellings mapped to the arch names in the package.
ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
# MFD_EXEC (Linux 6.3+) asks for an executable memfd where vm.memfd_noexec=1; older kernels
# reject the flag, so 0 is tried next.
MFD_EXEC = getattr(os, "MFD_EXEC", 0x10)


def fail(message):
    sys.stderr.write(BINARY + " launcher: " + message + "\n")
    sys.stderr.flush()
    sys.exit(1)


def main():
    method = os.environ.get("INSTALL_METHOD", "").strip().lower()
    if method in ("serverless", "aws_lambda"):
        fail("this package has no serverless front; run the binary with INSTALL_METHOD=serverless itself")
    arch = ARCHES.get(platform.machine().lower())
    if arch is None:
        fail("unsupported machine %r: the package has linux amd64 and arm64 binaries" % platform.machine())
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "bin", "%s-linux-%s" % (BINARY, arch))
    if not os.path.isfile(path):
        fail("this package has no binary for %s (bin/%s-linux-%s is missing)" % (arch, BINARY, arch))
    argv = [path] + sys.argv[1:]
    errors = []
    try:
        os.chmod(path, 0o755)
    except OSError as err:
        errors.append("chmod: %s" % (err.strerror or err))
    try:
        os.execv(path, argv)
    except OSError as err:
        errors.append("exec %s: %s" % (path, err.strerror or err))
    try:
        with open(path, "rb") as source:
            data = source.read()
    except OSError as err:
        fail("cannot read %s: %s" % (path, err.strerror or err))
    for flags in (MFD_EXEC, 0):
        if not hasattr(os, "memfd_create"):
            break
        try:
            fd = os.memfd_create(BINARY, flags)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.execv("/proc/self/fd/%d" % fd, argv)
        except OSError as err:
            errors.append("memfd (flags %#x): %s" % (flags, err.strerror or err))
    fail("cannot start the plugin binary: " + "; ".join(errors))


if __name__ == "__main__":
    main()
