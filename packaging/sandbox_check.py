#!/usr/bin/env python3
"""Would healer have run under its unit's sandbox? Checks an strace log against healer.service.

Usage: sandbox_check.py UNIT_FILE STRACE_LOG PROGRAM [WRITABLE_DIR ...]

systemd is not PID 1 where CI runs, so the unit cannot be started there. Instead healer runs
as the unit says (its user, its environment, cwd /) under `strace -f`, and this script checks
every system call made from the execve() of PROGRAM on (what ran before it, such as setpriv
dropping privileges, is systemd's part) against the restrictions the unit sets:
  SystemCallFilter=        every call is in the allowed set (systemd-analyze syscall-filter)
  RestrictAddressFamilies= every socket() family is allowed (AF_NETLINK: see below)
  MemoryDenyWriteExecute=  no mmap with PROT_WRITE|PROT_EXEC, no mprotect adding PROT_EXEC
  RestrictNamespaces=      no clone/unshare with CLONE_NEW*
  RestrictRealtime=        no SCHED_FIFO/SCHED_RR
  ProtectSystem=strict     no write outside WRITABLE_DIRs (the state directory), /tmp, /dev
  PrivateDevices=          no device but the pseudo ones systemd provides
  ProcSubset=pid           (reported) which non-process /proc files were read
glibc's getaddrinfo(AI_ADDRCONFIG) opens an AF_NETLINK socket; when the sandbox refuses it,
glibc assumes both IPv4 and IPv6 are configured and goes on, so that one is reported, not failed.
Exit 1 with one line per violation.
"""
import re
import subprocess
import sys

CALL = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$")
PSEUDO_DEVICES = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
                  "/dev/tty", "/dev/ptmx", "/dev/stdin", "/dev/stdout", "/dev/stderr"}
WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC")
PATH_WRITES = {"mkdir", "mkdirat", "unlink", "unlinkat", "rmdir", "rename", "renameat",
               "renameat2", "link", "linkat", "symlink", "symlinkat", "mknod", "mknodat",
               "chmod", "fchmodat", "chown", "fchownat", "lchown", "truncate", "utimensat"}


def syscall_groups():
    """Every group systemd knows: {"@name": [members]} (members are calls or @groups)."""
    text = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"],
                          capture_output=True, text=True, check=True).stdout
    groups, current = {}, None
    for line in text.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif current is not None and line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())
    return groups


def expand(names, groups):
    result = set()
    for name in names:
        if name.startswith("@"):
            result |= expand(groups.get(name, []), groups)
        else:
            result.add(name)
    return result


def unit_settings(path):
    settings = {}
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def allowed_syscalls(settings):
    groups = syscall_groups()
    allowed = None
    for value in settings.get("SystemCallFilter", []):
        deny = value.startswith("~")
        names = expand(value.lstrip("~").split(), groups)
        if deny:
            allowed = (allowed if allowed is not None else set()) - names
        else:
            allowed = (allowed or set()) | names
    return allowed


def first_path(arguments):
    match = re.search(r'"((?:[^"\\]|\\.)*)"', arguments)
    return match.group(1) if match else None


def main():
    unit, log, program, writable = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    settings = unit_settings(unit)
    allowed = allowed_syscalls(settings)
    families = set()
    for value in settings.get("RestrictAddressFamilies", []):
        families |= set(value.split())
    writable_roots = [w.rstrip("/") for w in writable] + ["/tmp", "/var/tmp", "/dev"]

    violations, notes, used, proc_files = [], set(), set(), set()
    pending = {}  # pid -> (line, path) of a write whose result strace printed later

    def check_write(line, path, result):
        # A write that failed here (EACCES, ENOENT) fails under the sandbox too, and healer
        # copes with it either way; only one that succeeded here depends on a writable path.
        if re.search(r"= -1 ", result):
            return
        if not any(path == root or path.startswith(root + "/") for root in writable_roots):
            violations.append(f"ProtectSystem=strict (read-only): {line.strip()}")

    started = False
    for line in open(log, encoding="utf-8", errors="replace"):
        match = CALL.match(line.rstrip("\n"))
        if not match:
            continue
        if not started:
            started = match.group(3) == "execve" and \
                match.group(4).startswith(f'"{program}"') and line.rstrip().endswith("= 0")
            continue
        pid = match.group(1)
        name = match.group(2) or match.group(3)
        arguments = match.group(4)
        used.add(name)
        if match.group(2):  # "<... x resumed>": the first half had the arguments
            if pid in pending:
                check_write(*pending.pop(pid), arguments)
            continue
        if name in ("socket", "socketpair"):
            family = re.match(r"(AF_\w+)", arguments)
            if family and family.group(1) not in families:
                if family.group(1) == "AF_NETLINK":
                    notes.add("AF_NETLINK socket (glibc getaddrinfo; refused by the sandbox, "
                              "glibc falls back)")
                else:
                    violations.append(f"RestrictAddressFamilies: {line.strip()}")
        elif name == "mmap" and "PROT_WRITE" in arguments and "PROT_EXEC" in arguments:
            violations.append(f"MemoryDenyWriteExecute: {line.strip()}")
        elif name in ("mprotect", "pkey_mprotect") and "PROT_EXEC" in arguments:
            violations.append(f"MemoryDenyWriteExecute: {line.strip()}")
        elif name in ("clone", "clone3", "unshare", "setns") and "CLONE_NEW" in arguments:
            violations.append(f"RestrictNamespaces: {line.strip()}")
        elif name.startswith("sched_setscheduler") and re.search(r"SCHED_(FIFO|RR)", arguments):
            violations.append(f"RestrictRealtime: {line.strip()}")
        path = first_path(arguments)
        if path is None or not path.startswith("/"):
            continue
        writes = (name in ("open", "openat", "openat2", "creat") and
                  any(flag in arguments for flag in WRITE_FLAGS)) or name in PATH_WRITES
        if writes:
            if arguments.endswith("<unfinished ...>"):
                pending[pid] = (line, path)
            else:
                check_write(line, path, arguments)
        if path.startswith("/dev/") and not path.startswith(("/dev/pts/", "/dev/shm/")) and \
                path not in PSEUDO_DEVICES and name in ("open", "openat", "openat2"):
            violations.append(f"PrivateDevices: {line.strip()}")
        if path.startswith("/proc/") and not re.match(r"/proc/(self|thread-self|\d+)(/|$)", path):
            proc_files.add(path)

    if not started:
        violations.append(f"no successful execve of {program} in {log}")
    if allowed is not None:
        for name in sorted(used - allowed):
            violations.append(f"SystemCallFilter: {name} is not allowed")
    print(f"sandbox check: {len(used)} distinct system calls, "
          f"{len(violations)} violations of {unit}")
    for note in sorted(notes):
        print(f"  note: {note}")
    if proc_files:
        print(f"  note: non-process /proc files read (ProcSubset=pid would hide them): "
              f"{', '.join(sorted(proc_files))}")
    for violation in violations:
        print(f"  VIOLATION {violation}", file=sys.stderr)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
