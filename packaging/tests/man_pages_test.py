#!/usr/bin/env python3
"""The man pages cli_docs.py generated at build time.

One page per command `healer --help` lists (and no other), each with its .gz twin, formatting
without a groff warning, with the sections a man page needs, documenting every long option of its
command and of its nested commands (each nested command has its own section); healer(1) carries
the hand-written sections and the version; man(1) renders them.

Usage: man_pages_test.py HEALER GENERATED_DIR
"""
import gzip
import os
import re
import subprocess
import sys
from pathlib import Path


def help_of(healer, *path):
    return subprocess.run([healer, *path, "--help"], capture_output=True, text=True,
                          check=True).stdout


def subcommands(text):
    block = re.search(r"^Subcommands:\n((?:  .*\n)+)", text, re.MULTILINE)
    return [line.split()[0] for line in block.group(1).splitlines()] if block else []


def long_options(text):
    return sorted({option for line in text.splitlines() if line.startswith("  -")
                   for option in re.findall(r"--[a-z][a-z0-9-]*", line)})


def main():
    healer, generated = sys.argv[1], Path(sys.argv[2])
    man = generated / "man" / "man1"
    failures = []
    top = help_of(healer)
    commands = subcommands(top)
    if len(commands) < 5:
        failures.append(f"healer --help lists {len(commands)} commands")
    pages = ["healer"] + [f"healer-{command}" for command in commands]
    for page in pages:
        file = man / f"{page}.1"
        if not file.is_file() or not file.with_name(file.name + ".gz").is_file():
            failures.append(f"{page}: {file} or its .gz is missing")
            continue
        text = file.read_text(encoding="utf-8")
        if gzip.decompress(file.with_name(file.name + ".gz").read_bytes()).decode() != text:
            failures.append(f"{page}: {file}.gz is not {file} compressed")
        groff = subprocess.run(["groff", "-man", "-ww", "-z", str(file)], capture_output=True,
                               text=True)
        if groff.returncode != 0 or groff.stderr:
            failures.append(f"{page}: groff warns: {groff.stderr.strip()}")
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SEE ALSO"):
            if not re.search(rf'^\.SH "?{section}', text, re.MULTILINE):
                failures.append(f"{page}: no {section} section")
    found = sorted(p.name for p in man.glob("healer*.1"))
    if len(found) != len(pages):
        failures.append(f"{len(found)} pages ({', '.join(found)}) for {len(pages)} commands")

    # Every long option of every command, nested ones included, is on its command's page as roff
    # writes it (\-\-name), and every nested command has its own section.
    for command in commands:
        page = man / f"healer-{command}.1"
        if not page.is_file():
            continue
        text = page.read_text(encoding="utf-8")
        documented = set(re.findall(r"(?:\\-)+[a-z0-9]+(?:\\-[a-z0-9]+)*", text))
        command_help = help_of(healer, command)
        for path, help_text in [((command,), command_help)] + [
                ((command, nested), help_of(healer, command, nested))
                for nested in subcommands(command_help)]:
            if len(path) == 2 and not re.search(
                    rf"^\.SH HEALER {command.upper()} {path[1].upper()}$", text, re.MULTILINE):
                failures.append(f"healer-{command}: no section for healer {' '.join(path)}")
            missing = [o for o in long_options(help_text) if o.replace("-", "\\-") not in documented]
            if missing:
                failures.append(f"healer-{command}: {' '.join(path)} {' '.join(missing)} "
                                "not documented")

    top_page = (man / "healer.1").read_text(encoding="utf-8") if (man / "healer.1").is_file() else ""
    for section in ("ENVIRONMENT", "FILES", "EXIT STATUS"):
        if f"\n.SH {section}" not in top_page:
            failures.append(f"healer: no {section} section")
    version = subprocess.run([healer, "--version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    if f'"{version}"' not in top_page:
        failures.append(f"healer.1 does not carry '{version}'")

    # Rendered by man(1) as a user reads it.
    rendered = subprocess.run(["man", "-P", "cat", "healer-server"], capture_output=True,
                              text=True, env=dict(os.environ, MANPATH=str(generated / "man"),
                                                  MANWIDTH="100")).stdout
    if "healer server add [OPTIONS] name" not in rendered:
        failures.append("man healer-server: no synopsis of 'healer server add'")
    if "--password-stdin" not in rendered:
        failures.append("man healer-server: no --password-stdin")

    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    if failures:
        return 1
    print(f"man pages: {len(pages)} pages OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
