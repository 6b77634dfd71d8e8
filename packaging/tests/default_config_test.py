#!/usr/bin/env python3
"""The shipped /etc/healer/config.toml (packaging/config.toml).

As shipped it sets nothing (every setting is commented out), so the service runs on its
defaults. Uncommenting every example line (`#key = value`, `#[table]`) gives a file that
parses, uses only the tables healer knows, whose [pool] keys are the pool flags of
`healer exec --help`, and whose [pool] values are the defaults printed there. When this build
has `healer serve`, `healer serve --check-config` accepts both versions.

Usage: default_config_test.py HEALER CONFIG_TOML
"""
import os
import re
import subprocess
import sys
import tempfile
import tomllib

KNOWN_TABLES = {"pool", "checks", "store", "schedule", "notify", "serve"}
EXAMPLE = re.compile(r'^#(\[|[A-Za-z_"][A-Za-z0-9_."]* *=)')


def main():
    healer, path = sys.argv[1], sys.argv[2]
    failures = []
    shipped_text = open(path, encoding="utf-8").read()
    shipped = tomllib.loads(shipped_text)
    if shipped:
        failures.append(f"the shipped file sets {sorted(shipped)}; everything must be commented")
    lines = [EXAMPLE.sub(r"\1", line) for line in shipped_text.splitlines()]
    uncommented_text = "\n".join(lines) + "\n"
    try:
        uncommented = tomllib.loads(uncommented_text)
    except tomllib.TOMLDecodeError as error:
        print(f"FAIL: uncommented, the file is not TOML: {error}", file=sys.stderr)
        return 1
    if set(uncommented) - KNOWN_TABLES:
        failures.append(f"unknown tables: {sorted(set(uncommented) - KNOWN_TABLES)}")
    missing = KNOWN_TABLES - set(uncommented)
    if missing:
        failures.append(f"tables not shown: {sorted(missing)}")

    # "--max-connections N   SSH connections ... (env SSH_POOL_MAX_SIZE, default 20)"
    help_text = subprocess.run([healer, "exec", "--help"], capture_output=True, text=True,
                               check=True).stdout
    entries = re.sub(r"\n {3,}", " ", help_text).splitlines()  # wrapped descriptions joined
    defaults = {}
    for entry in entries:
        if match := re.match(r"^  --([a-z-]+) \S+ .*\(env \w+, default (\w+)\)$", entry):
            defaults[match.group(1).replace("-", "_")] = match.group(2)
    if len(defaults) < 15:
        failures.append(f"found only {len(defaults)} pool defaults in healer exec --help")
    for key, value in uncommented.get("pool", {}).items():
        if key not in defaults:
            failures.append(f"[pool] {key} is not a pool setting (healer exec --help)")
        elif str(value) != defaults[key]:
            failures.append(f"[pool] {key} = {value}, but its default is {defaults[key]}")
    for key in set(defaults) - set(uncommented.get("pool", {})):
        failures.append(f"[pool] {key} is not shown")

    top_help = subprocess.run([healer, "--help"], capture_output=True, text=True,
                              check=True).stdout
    if re.search(r"^  serve ", top_help, re.MULTILINE):
        with tempfile.TemporaryDirectory() as directory:
            example = os.path.join(directory, "config.toml")
            with open(example, "w", encoding="utf-8") as out:
                out.write(uncommented_text)
            for name, config in (("shipped", path), ("uncommented", example)):
                check = subprocess.run(
                    [healer, "serve", "--check-config", "--config", config],
                    capture_output=True, text=True, env=dict(os.environ, HOME=directory))
                if check.returncode != 0:
                    failures.append(f"healer serve --check-config rejects the {name} file: "
                                    f"{check.stdout.strip()} {check.stderr.strip()}")
        print("healer serve --check-config: both versions checked")
    else:
        print("this build has no `healer serve`: --check-config not run")

    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    if failures:
        return 1
    print("default config OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
