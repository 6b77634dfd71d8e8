#!/usr/bin/python3
"""asyncssh side of healer-ssh-bench: the same measurements as the healer client, in one process.

Run by Debian's interpreter (/usr/bin/python3, python3-asyncssh); healer-ssh-bench starts it once
per measurement and reads one JSON object from stdout:

  {"mode": "...", "samples_ms": [...]}                        connect, connect_run, warm, concurrent
  {"mode": "rss", "rss_before_kib": N, "rss_after_kib": M, "sessions": K}

Modes (every timed sample comes after one untimed warm-up of the same operation, as in healer):
  connect      asyncssh.connect(): TCP connect, key exchange, host key check, public key auth
  connect_run  connect() + conn.run('true'): the asyncssh twin of a full `ssh host true`
  warm         conn.run('true') on one established connection
  concurrent   asyncio.gather of --concurrency conn.run('true') on one connection (wall time)
  rss          VmRSS of this process before and after opening --sessions idle connections

No user ssh config, no agent: key file and known_hosts are given explicitly, like the others.
"""

import argparse
import asyncio
import gc
import json
import sys
import time
import warnings

# Debian's cryptography warns about legacy ciphers on import; the bench reads stdout only, but
# keep stderr clean for real errors.
warnings.simplefilter("ignore")

import asyncssh  # noqa: E402  (after the warnings filter on purpose)


def vm_rss_kib():
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


async def connect(args):
    return await asyncssh.connect(
        args.host,
        port=args.port,
        username=args.user,
        client_keys=[args.key],
        known_hosts=args.known_hosts,
        agent_path=None,
        config=None,
        connect_timeout=30,
    )


async def close(conn):
    conn.close()
    await conn.wait_closed()


async def run_true(conn):
    result = await conn.run("true", check=False)
    if result.exit_status != 0:
        raise RuntimeError(f"`true` exited with {result.exit_status}")


async def measure_connect(args, with_run):
    samples = []
    for index in range(args.runs + 1):
        started = time.perf_counter()
        conn = await connect(args)
        if with_run:
            await run_true(conn)
        elapsed = (time.perf_counter() - started) * 1000.0
        await close(conn)
        if index > 0:  # the first one is the warm-up
            samples.append(elapsed)
    return samples


async def measure_warm(args):
    conn = await connect(args)
    samples = []
    try:
        await run_true(conn)
        for _ in range(args.runs):
            started = time.perf_counter()
            await run_true(conn)
            samples.append((time.perf_counter() - started) * 1000.0)
    finally:
        await close(conn)
    return samples


async def measure_concurrent(args):
    conn = await connect(args)
    samples = []
    try:
        await asyncio.gather(*(run_true(conn) for _ in range(args.concurrency)))
        for _ in range(args.runs):
            started = time.perf_counter()
            await asyncio.gather(*(run_true(conn) for _ in range(args.concurrency)))
            samples.append((time.perf_counter() - started) * 1000.0)
    finally:
        await close(conn)
    return samples


async def measure_rss(args):
    # Warm-up: imports, crypto back ends and asyncio machinery are loaded before the baseline.
    await close(await connect(args))
    gc.collect()
    before = vm_rss_kib()
    gate = asyncio.Semaphore(args.concurrency)

    async def open_one():
        async with gate:
            return await connect(args)

    conns = await asyncio.gather(*(open_one() for _ in range(args.sessions)))
    await asyncio.sleep(0.2)  # let every connection go idle
    gc.collect()
    after = vm_rss_kib()
    await asyncio.gather(*(close(conn) for conn in conns))
    return {"rss_before_kib": before, "rss_after_kib": after, "sessions": len(conns)}


async def main_async(args):
    if args.mode == "connect":
        return {"samples_ms": await measure_connect(args, with_run=False)}
    if args.mode == "connect_run":
        return {"samples_ms": await measure_connect(args, with_run=True)}
    if args.mode == "warm":
        return {"samples_ms": await measure_warm(args)}
    if args.mode == "concurrent":
        return {"samples_ms": await measure_concurrent(args)}
    return await measure_rss(args)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--known-hosts", required=True)
    parser.add_argument(
        "--mode", required=True, choices=["connect", "connect_run", "warm", "concurrent", "rss"]
    )
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=200)
    args = parser.parse_args()
    try:
        result = asyncio.run(main_async(args))
    except (OSError, asyncssh.Error, RuntimeError) as error:
        print(json.dumps({"mode": args.mode, "error": f"{type(error).__name__}: {error}"}))
        return 1
    result["mode"] = args.mode
    result["asyncssh_version"] = asyncssh.__version__
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
