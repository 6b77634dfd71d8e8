#include "systemd_stand_in.hpp"

#include <fstream>
#include <iterator>
#include <sstream>

namespace healer::test {
namespace {

namespace fs = std::filesystem;

constexpr const char* kStandIn = R"sh(#!/bin/sh
# A stand-in for systemctl in healer's heal tests (systemd is not PID 1 in the sandboxes).
# Records every call as its arguments in brackets; unit states live in files under S.
S=@STATE@
{ printf 'systemctl'; for a in "$@"; do printf ' [%s]' "$a"; done; printf '\n'; } >> "$S/calls"
cmd=; unit=
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; unit=$1; break ;;
    -p) shift ;;
    --*) ;;
    *) if [ -z "$cmd" ]; then cmd=$1; else unit=$1; fi ;;
  esac
  shift
done
state() { if [ -f "$S/units/$unit" ]; then cat "$S/units/$unit"; else echo inactive; fi; }
case "$cmd" in
  show)
    if [ -f "$S/units/$unit" ]; then echo LoadState=loaded; else echo LoadState=not-found; fi
    echo "ActiveState=$(state)"
    echo "SubState=$(state)"
    if [ -f "$S/results/$unit" ]; then echo "Result=$(cat "$S/results/$unit")"; else echo Result=exit-code; fi
    echo NRestarts=2 ;;
  restart|start)
    if [ -f "$S/hang" ]; then echo started > "$S/hanging"; sleep 20; fi
    if [ -f "$S/fail" ]; then echo "Job for $unit failed because the control process exited with error code." >&2; exit 1; fi
    if [ -f "$S/after" ]; then cp "$S/after" "$S/units/$unit"; else echo active > "$S/units/$unit"; fi ;;
  reset-failed) echo success > "$S/results/$unit" ;;
  is-active) state; [ "$(state)" = active ] ;;
  '')
    for f in "$S"/units/*; do
      [ -f "$f" ] || continue
      if [ "$(cat "$f")" = failed ]; then printf '%s loaded failed failed stand-in unit\n' "${f##*/}"; fi
    done ;;
  *) echo "stand-in systemctl: '$cmd' is not simulated" >&2; exit 1 ;;
esac
)sh";

}  // namespace

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

SystemdStandIn::SystemdStandIn() {
  fs::create_directories(state() / "units");
  fs::create_directories(state() / "results");
  for (const auto& dir : {dir_.path(), state(), state() / "units", state() / "results"}) {
    fs::permissions(dir, fs::perms::all);
  }
  std::string script = kStandIn;
  script.replace(script.find("@STATE@"), 7, state().string());
  write_file(script_path(), script);
  fs::permissions(script_path(), fs::perms::owner_all | fs::perms::group_read |
                                     fs::perms::group_exec | fs::perms::others_read |
                                     fs::perms::others_exec);
  write_file(state() / "calls", "");
  fs::permissions(state() / "calls", fs::perms::all);
}

SshdFixture::Options SystemdStandIn::sshd_options() const {
  SshdFixture::Options options;
  options.mount_namespace_setup =
      "mount -t tmpfs -o mode=0755 tmpfs /run/systemd\nmkdir /run/systemd/system\n"
      "mount --bind " +
      script_path().string() + " /usr/bin/systemctl";
  return options;
}

void SystemdStandIn::set_unit(const std::string& unit, const std::string& active_state) {
  write_file(state() / "units" / unit, active_state + "\n");
  fs::permissions(state() / "units" / unit, fs::perms::all);
}

void SystemdStandIn::after_start(const std::string& active_state) {
  write_file(state() / "after", active_state + "\n");
}

void SystemdStandIn::set_flag(const std::string& name) { write_file(state() / name, "1\n"); }

std::vector<std::string> SystemdStandIn::calls() const {
  std::vector<std::string> lines;
  std::istringstream in(read_file(state() / "calls"));
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
  }
  return lines;
}

std::vector<std::string> SystemdStandIn::changes() const {
  std::vector<std::string> out;
  for (const auto& line : calls()) {
    if (line.rfind("systemctl [show]", 0) != 0 && line.rfind("systemctl [is-active]", 0) != 0 &&
        line.rfind("systemctl [--failed]", 0) != 0) {
      out.push_back(line);
    }
  }
  return out;
}

}  // namespace healer::test
