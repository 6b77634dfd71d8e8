#!/usr/bin/python3
"""asyncssh side of healer-pool-bench and healer-cli-bench: a diagnosis on one server and a sweep.

Run by Debian's interpreter (/usr/bin/python3, python3-asyncssh); the benchmarks start it and
reads one JSON object from stdout. asyncssh is used the way a careful user would for many hosts:
the private key and known_hosts are read once and passed as objects (not file names that asyncssh
would re-read per connection); no user ssh config, no agent.

Modes:
  diagnosis  --host H --port P --command C [--command C ...] --runs R [--gap-ms G]
             cold: R+1 times connect() + asyncio.gather of every command, timed, then close
                   (the first is an untimed warm-up);
             warm: one connection, one untimed gather, then R timed gathers, G ms apart.
             -> {"cold_ms": [...], "warm_ms": [...], "failures": n}
  oneshot    --host H --port P --command C [--command C ...]
             one cold diagnosis in this fresh process: connect() + asyncio.gather of every
             command, then close; timed from just before `import asyncssh` (the interpreter's own
             start-up is only in the caller's process-start-to-exit figure).
             -> {"import_ms": ..., "connect_run_ms": ..., "inside_ms": ..., "failures": n}
  fleet      --hosts-file F --port P --command C --warm-sweeps W --concurrency K
             one run: cold = gather over every host of (connect + run) with at most K of them in
             flight (a semaphore); warm = W more gathers of conn.run on the open connections, all
             at once; then every connection is closed (untimed).
             -> {"cold_ms": x, "warm_ms": [...], "cold_cpu_ms": ..., "warm_cpu_ms": [...],
                 "cold_machine_busy_ms": ..., "warm_machine_busy_ms": [...],
                 "vm_hwm_kib": ..., "vm_rss_start_kib": ..., "failures": n, "first_error": "..."}

A command "fails" when it raised or exited non-zero; failures are counted, never retried.
"""

import argparse
import asyncio
import json
import os
import resource
import sys
import time
import warnings

STARTED = time.perf_counter()  # before `import asyncssh`: the oneshot mode counts the import

# Debian's cryptography warns about legacy ciphers on import; keep stderr for real errors.
warnings.simplefilter("ignore")

import asyncssh  # noqa: E402  (after the warnings filter on purpose)

IMPORTED = time.perf_counter()


def status_kib(field):
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def machine_busy_ms():
    """CPU time all CPUs of the machine spent busy (not idle or iowait) since boot, in ms."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = stat.readline().split()[1:]
    values = [int(value) for value in fields]
    busy = sum(values[:8]) - values[3] - values[4]  # user nice system [idle iowait] irq ...
    return busy * 1000.0 / os.sysconf("SC_CLK_TCK")


def own_cpu_ms():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) * 1000.0


class Credentials:
    def __init__(self, args):
        self.user = args.user
        self.port = args.port
        self.keys = [asyncssh.read_private_key(args.key)]
        self.known_hosts = asyncssh.read_known_hosts(args.known_hosts)

    async def connect(self, host):
        return await asyncssh.connect(
            host,
            port=self.port,
            username=self.user,
            client_keys=self.keys,
            known_hosts=self.known_hosts,
            agent_path=None,
            config=None,
            connect_timeout=60,
        )


class Failures:
    def __init__(self):
        self.count = 0
        self.first = ""

    def add(self, what):
        self.count += 1
        if not self.first:
            self.first = what


async def run_one(conn, command, failures):
    try:
        result = await conn.run(command, check=False)
    except (OSError, asyncssh.Error) as error:
        failures.add(f"{type(error).__name__}: {error}")
        return
    if result.exit_status != 0:
        failures.add(f"`{command}` exited with {result.exit_status}")


async def close(conn):
    conn.close()
    await conn.wait_closed()


async def gather_commands(conn, commands, failures):
    await asyncio.gather(*(run_one(conn, command, failures) for command in commands))


async def diagnosis(args):
    creds = Credentials(args)
    failures = Failures()
    cold = []
    for index in range(args.runs + 1):
        started = time.perf_counter()
        conn = await creds.connect(args.host)
        await gather_commands(conn, args.command, failures)
        elapsed = (time.perf_counter() - started) * 1000.0
        await close(conn)
        if index > 0:
            cold.append(elapsed)
    warm = []
    conn = await creds.connect(args.host)
    try:
        await gather_commands(conn, args.command, failures)
        for _ in range(args.runs):
            await asyncio.sleep(args.gap_ms / 1000.0)
            started = time.perf_counter()
            await gather_commands(conn, args.command, failures)
            warm.append((time.perf_counter() - started) * 1000.0)
    finally:
        await close(conn)
    return {"cold_ms": cold, "warm_ms": warm, "failures": failures.count,
            "first_error": failures.first}


async def oneshot(args):
    creds = Credentials(args)
    failures = Failures()
    started = time.perf_counter()
    conn = await creds.connect(args.host)
    await gather_commands(conn, args.command, failures)
    finished = time.perf_counter()
    await close(conn)
    return {"import_ms": (IMPORTED - STARTED) * 1000.0,
            "connect_run_ms": (finished - started) * 1000.0,
            "inside_ms": (finished - STARTED) * 1000.0,
            "failures": failures.count, "first_error": failures.first}


async def fleet(args):
    with open(args.hosts_file, encoding="ascii") as hosts_file:
        hosts = [line.strip() for line in hosts_file if line.strip()]
    creds = Credentials(args)
    failures = Failures()
    gate = asyncio.Semaphore(args.concurrency)
    report = {"vm_rss_start_kib": status_kib("VmRSS"), "hosts": len(hosts)}

    async def connect_and_run(host):
        async with gate:
            try:
                conn = await creds.connect(host)
            except (OSError, asyncssh.Error) as error:
                failures.add(f"{host}: {type(error).__name__}: {error}")
                return None
            await run_one(conn, args.command, failures)
            return conn

    busy_before = machine_busy_ms()
    cpu_before = own_cpu_ms()
    started = time.perf_counter()
    conns = await asyncio.gather(*(connect_and_run(host) for host in hosts))
    report["cold_ms"] = (time.perf_counter() - started) * 1000.0
    report["cold_cpu_ms"] = own_cpu_ms() - cpu_before
    report["cold_machine_busy_ms"] = machine_busy_ms() - busy_before
    conns = [conn for conn in conns if conn is not None]

    report["warm_ms"] = []
    report["warm_cpu_ms"] = []
    report["warm_machine_busy_ms"] = []
    for _ in range(args.warm_sweeps):
        busy_before = machine_busy_ms()
        cpu_before = own_cpu_ms()
        started = time.perf_counter()
        await asyncio.gather(*(run_one(conn, args.command, failures) for conn in conns))
        report["warm_ms"].append((time.perf_counter() - started) * 1000.0)
        report["warm_cpu_ms"].append(own_cpu_ms() - cpu_before)
        report["warm_machine_busy_ms"].append(machine_busy_ms() - busy_before)

    report["vm_hwm_kib"] = status_kib("VmHWM")
    await asyncio.gather(*(close(conn) for conn in conns), return_exceptions=True)
    report["connections"] = len(conns)
    report["failures"] = failures.count
    report["first_error"] = failures.first
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", required=True, choices=["diagnosis", "oneshot", "fleet"])
    parser.add_argument("--host")
    parser.add_argument("--hosts-file")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--known-hosts", required=True)
    parser.add_argument("--command", action="append", required=True)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warm-sweeps", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--gap-ms", type=float, default=20.0)
    args = parser.parse_args()
    try:
        if args.mode == "diagnosis":
            result = asyncio.run(diagnosis(args))
        elif args.mode == "oneshot":
            result = asyncio.run(oneshot(args))
        else:
            args.command = args.command[0]
            result = asyncio.run(fleet(args))
    except (OSError, asyncssh.Error, RuntimeError) as error:
        print(json.dumps({"mode": args.mode, "error": f"{type(error).__name__}: {error}"}))
        return 1
    result["mode"] = args.mode
    result["asyncssh_version"] = asyncssh.__version__
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
