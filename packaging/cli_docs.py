#!/usr/bin/env python3
"""Man pages and shell completions for healer, generated from its own --help output.

Usage: cli_docs.py --healer BIN --out DIR [--extra FILE]

Runs `BIN --help`, then `BIN <command> --help` for every subcommand listed there (recursively),
parses CLI11's help format and writes:
  DIR/man/man1/healer.1         the program, its commands, global options, --extra's sections
  DIR/man/man1/healer-<command>.1   one page per top-level command; nested commands are
                                subsections; each also as .1.gz (gzip -9n: reproducible)
  DIR/completions/healer.bash   bash: commands, options, fixed option values, file arguments
  DIR/completions/_healer       zsh: the same, with descriptions

Why not help2man: it makes one page per program from one --help text, so `healer server add`'s
options would be missing from every page, and the completions need the same parse anyway.
A help line this parser does not understand fails the build: a change in the help format must
not silently drop options from the man pages or the completions.
"""
import argparse
import datetime
import gzip
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Options that name a local file (CLI11 prints their type as TEXT unless it is "FILE").
FILE_OPTIONS = {"--identity", "-i", "--known-hosts", "--stdin-file", "--commands", "--config",
                "--db", "--tls-cert", "--tls-key"}


@dataclass
class Entry:
    """One line of a help section: an option, a positional argument or a subcommand."""
    names: list
    value: str
    description: str = ""

    @property
    def takes_value(self):
        return self.value != ""

    def choices(self):
        """The fixed values of an option: `TEXT:{a,b}` or a `a|b|c` type."""
        braces = re.search(r"\{([^}]*)\}", self.value)
        if braces:
            return [v for v in braces.group(1).split(",") if v]
        if re.fullmatch(r"[a-z0-9-]+(\|[a-z0-9-]+)+", self.value):
            return self.value.split("|")
        return []


@dataclass
class Section:
    title: str
    entries: list = field(default_factory=list)


@dataclass
class Command:
    path: tuple
    description: str
    usage: str
    sections: list
    children: list = field(default_factory=list)

    def section(self, title):
        return next((s for s in self.sections if s.title == title), None)

    def subcommand_names(self):
        section = self.section("Subcommands")
        return [e.names[0] for e in section.entries] if section else []

    def options(self):
        """Every option entry (all sections but positionals and subcommands)."""
        return [e for s in self.sections if s.title not in ("Positionals", "Subcommands")
                for e in s.entries]


class HelpFormatError(Exception):
    pass


ENTRY = re.compile(r"^  (\S(?:.*?\S)?)(?: {2,}(\S.*))?$")
CONTINUATION = re.compile(r"^ {3,}(\S.*)$")
HEADER = re.compile(r"^(\S.*):$")


def parse_help(text, path):
    """Parses one CLI11 help text into a Command (without children)."""
    lines = text.splitlines()
    description = []
    usage = None
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if line.startswith("Usage:"):
            usage = line[len("Usage:"):].strip()
            break
        if line.strip():
            description.append(line.strip())
    if usage is None:
        raise HelpFormatError(f"{command_line(path)} --help: no 'Usage:' line")
    sections = []
    entry = None
    for number, line in enumerate(lines[index:], start=index + 1):
        if not line.strip():
            continue
        if header := HEADER.match(line):
            sections.append(Section(header.group(1)))
            entry = None
        elif sections and (continued := CONTINUATION.match(line)) and entry is not None:
            entry.description = (entry.description + " " + continued.group(1)).strip()
        elif sections and (match := ENTRY.match(line)):
            spec, described = match.group(1), match.group(2) or ""
            first, _, value = spec.partition(" ")
            entry = Entry(first.split(","), value.strip(), described)
            sections[-1].entries.append(entry)
        else:
            raise HelpFormatError(
                f"{command_line(path)} --help line {number} not understood: {line!r}")
    # CLI11 prints "Usage: server add [OPTIONS] name": the program's name is not in it.
    words = usage.split()
    for expected in ("healer",) + tuple(path):
        if words and words[0] == expected:
            words.pop(0)
    synopsis = " ".join(("healer",) + tuple(path) + tuple(words))
    return Command(tuple(path), " ".join(description), synopsis, sections)


def command_line(path):
    return " ".join(("healer",) + tuple(path))


def run_help(binary, path):
    environment = dict(os.environ, LC_ALL="C.UTF-8", NO_COLOR="1")
    environment.pop("HEALER_LOG", None)
    done = subprocess.run([binary, *path, "--help"], capture_output=True, text=True,
                          timeout=30, env=environment, check=False)
    if done.returncode != 0:
        raise HelpFormatError(
            f"{command_line(path)} --help exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def walk(binary, path=()):
    command = parse_help(run_help(binary, path), path)
    command.children = [walk(binary, path + (name,)) for name in command.subcommand_names()]
    return command


def every_command(command):
    yield command
    for child in command.children:
        yield from every_command(child)


# --- man pages ---------------------------------------------------------------------------------

def roff(text):
    """Escapes help text for a roff line (groff's man macros)."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def roff_option(entry):
    names = ", ".join(f"\\fB{roff(name)}\\fR" for name in entry.names)
    return names + (f" \\fI{roff(entry.value)}\\fR" if entry.value else "")


def roff_sections(command, lines, heading):
    """The option/positional/subcommand sections of one command, under `heading` macros."""
    titles = {"Positionals": "Arguments", "Options": "Options", "Subcommands": "Commands"}
    for section in command.sections:
        title = titles.get(section.title, section.title)
        lines.append(f"{heading} {roff(title.upper() if heading == '.SH' else title)}")
        for entry in section.entries:
            lines.append(".TP")
            if section.title == "Subcommands":
                lines.append(f"\\fB{roff(command_line(command.path + (entry.names[0],)))}\\fR")
            else:
                lines.append(roff_option(entry))
            lines.append(roff(entry.description))


def man_header(name, summary, version, date):
    return [
        f'.TH {name.upper()} 1 "{date}" "{roff(version)}" "User Commands"',
        ".SH NAME",
        f"{roff(name)} \\- {roff(summary)}",
    ]


def synopsis_lines(command):
    lines = [".SH SYNOPSIS"]
    for each in every_command(command):
        if each.children:
            continue
        name = command_line(each.path)
        rest = each.usage[len(name):].strip()
        lines += [".PP", f"\\fB{roff(name)}\\fR {roff(rest)}"]
    return lines


def top_page(root, version, date, extra):
    summary = re.sub(r"^healer:\s*", "", root.description)
    lines = man_header("healer", summary, version, date)
    lines += [".SH SYNOPSIS", f"\\fBhealer\\fR {roff(root.usage.split(' ', 1)[1])}",
              ".SH DESCRIPTION", roff(summary[:1].upper() + summary[1:]) + ".",
              "Each command has its own page, listed below, and its own \\fB\\-\\-help\\fR."]
    lines.append(".SH COMMANDS")
    for child in root.children:
        lines += [".TP", f"\\fBhealer\\-{roff(child.path[-1])}\\fR(1)", roff(child.description)]
    options = [s for s in root.sections if s.title != "Subcommands"]
    roff_sections(Command(root.path, "", "", options), lines, ".SH")
    if extra:
        lines += extra.rstrip("\n").splitlines()
    lines += see_also(root, None)
    return "\n".join(lines) + "\n"


def summary_of(description):
    """The NAME line (what `whatis` shows): the description up to its first ': ' or '; '."""
    return re.split(r"[:;] ", description, maxsplit=1)[0]


def command_page(root, command, version, date):
    name = "healer-" + command.path[-1]
    lines = man_header(name, summary_of(command.description), version, date)
    lines += synopsis_lines(command)
    lines += [".SH DESCRIPTION", roff(command.description)]
    roff_sections(command, lines, ".SH")
    for child in every_command(command):
        if child is command:
            continue
        lines += [f".SH {roff(command_line(child.path).upper())}", roff(child.description),
                  ".PP", f"\\fB{roff(child.usage)}\\fR"]
        roff_sections(child, lines, ".SS")
    lines += see_also(root, command)
    return "\n".join(lines) + "\n"


def see_also(root, current):
    """Every other healer page (current: the page's command, None for healer(1)), then ssh's."""
    own = "healer" if current is None else "healer-" + current.path[-1]
    pages = [p for p in ["healer"] + ["healer-" + c.path[-1] for c in root.children] if p != own]
    return [".SH SEE ALSO", ",\n".join(f"\\fB{roff(p)}\\fR(1)" for p in pages) +
            ", \\fBssh\\fR(1), \\fBsshd_config\\fR(5)"]


# --- completions -------------------------------------------------------------------------------

def spec_of(command):
    options = command.options()
    names = [n for e in options for n in e.names]
    valued = [n for e in options if e.takes_value for n in e.names]
    files = [n for e in options if e.takes_value and (e.value == "FILE" or
                                                       set(e.names) & FILE_OPTIONS)
             for n in e.names]
    choices = {n: e.choices() for e in options for n in e.names if e.choices()}
    return names, valued, files, choices


def words(items):
    return shlex.quote(" ".join(items))


def bash_completion(root):
    spec_cases, choice_cases = [], []
    for command in every_command(root):
        key = shlex.quote(" ".join(command.path))
        names, valued, files, choices = spec_of(command)
        spec_cases.append(
            f"    {key})\n      _subs={words(command.subcommand_names())}\n"
            f"      _opts={words(names)}\n      _valued={words(valued)}\n"
            f"      _files={words(files)} ;;")
        for option, values in choices.items():
            choice_cases.append(f"    {shlex.quote(' '.join(command.path) + '|' + option)}) "
                                f"_choices={words(values)} ;;")
    return BASH_TEMPLATE.format(spec="\n".join(spec_cases), choices="\n".join(choice_cases))


BASH_TEMPLATE = r"""# bash completion for healer; generated from `healer --help` by packaging/cli_docs.py.
# Completes commands, options, fixed option values and file arguments; nothing after `--`
# (the remote command of `healer exec`).

# Sets _subs, _opts, _valued (options that take a value) and _files for a command path.
_healer_spec() {{
  case "$1" in
{spec}
    *) _subs='' _opts='' _valued='' _files='' ;;
  esac
}}

# Sets _choices to the fixed values of option $2 of command path $1.
_healer_choices() {{
  case "$1|$2" in
{choices}
    *) _choices='' ;;
  esac
}}

# Completes the value $3 of option $2 of command path $1.
_healer_value() {{
  local _choices
  _healer_choices "$1" "$2"
  if [[ -n $_choices ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$_choices" -- "$3")
  elif [[ " $_files " == *" $2 "* ]]; then
    compopt -o filenames 2>/dev/null
    mapfile -t COMPREPLY < <(compgen -f -- "$3")
  fi
}}

_healer() {{
  local cur=${{COMP_WORDS[COMP_CWORD]}} path='' word i=1
  local _subs _opts _valued _files
  COMPREPLY=()
  _healer_spec ''
  while ((i < COMP_CWORD)); do
    word=${{COMP_WORDS[i]}}
    if [[ $word == -- ]]; then
      return 0
    elif [[ $word == -* ]]; then
      if [[ " $_valued " == *" $word "* ]]; then
        # `--opt value`, or `--opt=value` (bash splits it at the `=`)
        if [[ ${{COMP_WORDS[i + 1]}} == = ]]; then
          ((i++))
        fi
        if ((i + 1 == COMP_CWORD)); then
          _healer_value "$path" "$word" "$cur"
          return 0
        fi
        ((i++))
      fi
    elif [[ " $_subs " == *" $word "* ]]; then
      path=${{path:+$path }}$word
      _healer_spec "$path"
    fi
    ((i++))
  done
  if [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$_opts" -- "$cur")
  elif [[ -n $_subs ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$_subs" -- "$cur")
  fi
  return 0
}}

complete -F _healer healer
"""


def zsh_described(entries):
    items = []
    for entry in entries:
        for name in entry.names:
            items.append(shlex.quote(name.replace(":", "\\:") + ":" + entry.description))
    return "(" + " ".join(items) + ")"


def zsh_completion(root):
    spec_cases, choice_cases = [], []
    for command in every_command(root):
        key = shlex.quote(" ".join(command.path))
        names, valued, files, choices = spec_of(command)
        section = command.section("Subcommands")
        subs = zsh_described(section.entries if section else [])
        spec_cases.append(
            f"    {key})\n      subs={subs}\n      opts={zsh_described(command.options())}\n"
            f"      valued=({' '.join(shlex.quote(v) for v in valued)})\n"
            f"      files=({' '.join(shlex.quote(f) for f in files)}) ;;")
        for option, values in choices.items():
            choice_cases.append(f"    {shlex.quote(' '.join(command.path) + '|' + option)}) "
                                f"choices=({' '.join(shlex.quote(v) for v in values)}) ;;")
    return ZSH_TEMPLATE.format(spec="\n".join(spec_cases), choices="\n".join(choice_cases))


ZSH_TEMPLATE = r"""#compdef healer
# zsh completion for healer; generated from `healer --help` by packaging/cli_docs.py.
# Completes commands and options (with their descriptions), fixed option values and file
# arguments; nothing after `--` (the remote command of `healer exec`).

# Sets subs and opts ("name:description"), valued and files for a command path.
_healer_spec() {{
  case "$1" in
{spec}
    *) subs=() opts=() valued=() files=() ;;
  esac
}}

# Sets choices to the fixed values of option $2 of command path $1.
_healer_choices() {{
  case "$1|$2" in
{choices}
    *) choices=() ;;
  esac
}}

_healer() {{
  local cmd_path='' word
  local -a subs opts valued files choices
  local -i i=2
  _healer_spec ''
  while (( i < CURRENT )); do
    word=${{words[i]}}
    if [[ $word == -- ]]; then
      return 1
    elif [[ $word == -* ]]; then
      if (( ${{valued[(Ie)${{word%%=*}}]}} )) && [[ $word != *=* ]]; then
        if (( i + 1 == CURRENT )); then
          _healer_choices "$cmd_path" "$word"
          if (( ${{#choices}} )); then
            _describe -t values 'value' choices
          elif (( ${{files[(Ie)$word]}} )); then
            _files
          else
            _message 'value'
          fi
          return
        fi
        (( i++ ))
      fi
    elif (( ${{subs[(I)${{word}}:*]}} )); then
      cmd_path=${{cmd_path:+$cmd_path }}$word
      _healer_spec "$cmd_path"
    fi
    (( i++ ))
  done
  if [[ $PREFIX == -* ]]; then
    _describe -t options 'option' opts
  elif (( ${{#subs}} )); then
    _describe -t commands 'healer command' subs
  else
    return 1
  fi
}}

if [[ ${{funcstack[1]}} == _healer ]]; then
  _healer "$@"
else
  compdef _healer healer
fi
"""


# --- main --------------------------------------------------------------------------------------

def source_date():
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch
            else datetime.datetime.now(datetime.timezone.utc))
    return when.strftime("%Y-%m-%d")


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def write_man(path, text):
    """The page, and the page compressed as Debian installs it (no name, no time stamp)."""
    write(path, text)
    compressed = path.with_name(path.name + ".gz.tmp")
    with open(compressed, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=raw, mtime=0) as out:
            out.write(text.encode("utf-8"))
    compressed.replace(path.with_name(path.name + ".gz"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--healer", required=True, help="the healer binary")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--extra", type=Path, help="roff sections appended to healer(1)")
    args = parser.parse_args()
    try:
        root = walk(args.healer)
        version = subprocess.run([args.healer, "--version"], capture_output=True, text=True,
                                 timeout=30, check=True).stdout.strip()
    except (HelpFormatError, subprocess.SubprocessError, OSError) as error:
        print(f"cli_docs.py: {error}", file=sys.stderr)
        return 1
    date = source_date()
    extra = args.extra.read_text(encoding="utf-8") if args.extra else ""
    man = args.out / "man" / "man1"
    if man.is_dir():  # a command that no longer exists loses its page
        for stale in man.glob("healer*.1*"):
            stale.unlink()
    write_man(man / "healer.1", top_page(root, version, date, extra))
    for child in root.children:
        write_man(man / f"healer-{child.path[-1]}.1", command_page(root, child, version, date))
    write(args.out / "completions" / "healer.bash", bash_completion(root))
    write(args.out / "completions" / "_healer", zsh_completion(root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
