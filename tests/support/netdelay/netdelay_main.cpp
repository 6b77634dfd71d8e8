// healer-netdelay: a packet-level delayed link for the test bed.
//
// Makes a network namespace with a veth pair into it and holds every IPv4 packet that crosses the
// pair for RTT/2 (NFQUEUE, FIFO, then NF_ACCEPT), so TCP's handshake costs a round trip, ACKs
// clock the sender and Nagle's algorithm acts as on a real path (unlike the DelayProxy, which
// terminates TCP in the test process). Kernel netem would do this, but these machines' kernels do
// not have it; NFQUEUE they have. Root only.
//
//   healer-netdelay --rtt-ms 50 [--watch-stdin]
//
// Prints one line on stdout when the link is up, then runs until SIGTERM, SIGINT or SIGHUP (or
// end of stdin with --watch-stdin: the parent went away):
//
//   ready pid=<pid> netns=/proc/<pid>/ns/net client=10.B.0.1 server=10.B.0.2 hosts=10.B.128.0/17
//         rtt_ms=50 slot=<s> root_if=hnd<s>r ns_if=hnd<s>n
//
// The process itself lives in the namespace: run a server there with setns() on /proc/<pid>/ns/net
// (or `nsenter --net=/proc/<pid>/ns/net`). It listens on `server` or on any address of `hosts`
// (every address of that /17 is local in the namespace, for fleets of servers); clients in the
// root namespace connect from `client`. The iptables rules and the queue exist only inside the
// namespace. The root namespace gets one lasting route, `unreachable 10.208.0.0/12`, so that
// traffic to a link that is gone fails at once instead of following the default route. On a signal
// the program deletes the veth pair (both ends and the root namespace's route go with it) and
// exits; when it is SIGKILLed the kernel removes the same once the last process in the namespace
// has exited. The slot (B = 208 + slot) is held with an flock on /run/healer-netdelay.<slot>.lock,
// so concurrent links never share addresses.
//
// Exit codes: 0 after a clean stop, 2 bad arguments, 3 setup failed (message on stderr), 4 the
// queue failed while running. On exit it prints its counters on stderr.

#include <arpa/inet.h>
#include <fcntl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

namespace {

constexpr int kSlots = 16;                          // 10.208.x.x ... 10.223.x.x
constexpr int kFirstOctet2 = 208;                   // second octet of slot 0
constexpr const char* kAllSlots = "10.208.0.0/12";  // every slot's /16
constexpr int kCommandTimeoutMs = 5000;
constexpr std::uint32_t kQueueMaxLen = 65536;
constexpr int kReceiveBuffer = 16 * 1024 * 1024;
constexpr std::uint16_t kQueueNum = 0;  // per namespace: no other user can collide

std::int64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

[[noreturn]] void fail(int code, const std::string& message) {
  std::fprintf(stderr, "healer-netdelay: %s\n", message.c_str());
  std::exit(code);
}

std::string errno_text(int error) { return std::strerror(error); }

// Runs argv with its network namespace set to `netns_fd` (-1: ours); stdout and stderr go to our
// stderr. Returns the exit code, or -1 when it did not exit within the timeout (then killed).
int run(const std::vector<std::string>& args, int netns_fd) {
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const auto& arg : args) {
    argv.push_back(const_cast<char*>(arg.c_str()));
  }
  argv.push_back(nullptr);
  const pid_t child = ::fork();
  if (child < 0) {
    fail(3, "fork: " + errno_text(errno));
  }
  if (child == 0) {
    if (netns_fd >= 0 && ::setns(netns_fd, CLONE_NEWNET) != 0) {
      ::_exit(126);
    }
    ::dup2(STDERR_FILENO, STDOUT_FILENO);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) {
      ::dup2(null_fd, STDIN_FILENO);
    }
    sigset_t empty;
    sigemptyset(&empty);
    ::sigprocmask(SIG_SETMASK, &empty, nullptr);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  const std::int64_t deadline = now_ns() + std::int64_t{kCommandTimeoutMs} * 1'000'000;
  for (;;) {
    int status = 0;
    const pid_t done = ::waitpid(child, &status, WNOHANG);
    if (done == child) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (now_ns() > deadline) {
      ::kill(child, SIGKILL);
      ::waitpid(child, &status, 0);
      return -1;
    }
    ::usleep(2000);
  }
}

std::string join(const std::vector<std::string>& args) {
  std::string out;
  for (const auto& arg : args) {
    out += out.empty() ? "" : " ";
    out += arg;
  }
  return out;
}

void must_run(const std::vector<std::string>& args, int netns_fd) {
  const int code = run(args, netns_fd);
  if (code != 0) {
    fail(3, "`" + join(args) + "` " + (code < 0 ? "timed out" : "exited " + std::to_string(code)));
  }
}

bool write_file(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  return ok;
}

// One held packet: the kernel's id, when it is due, and which way it goes.
struct Held {
  std::uint32_t id;
  std::int64_t due_ns;
};

struct Counters {
  std::uint64_t to_server = 0;  // PREROUTING in the namespace: client -> server
  std::uint64_t to_client = 0;  // POSTROUTING in the namespace: server -> client
  std::size_t max_held = 0;
  std::uint64_t late_releases = 0;  // released more than 1 ms after their due time
};

struct Link {
  std::int64_t one_way_ns = 0;
  std::deque<Held> held;  // FIFO: due times grow with ids, as the delay is the same for all
  Counters counters;
};

int on_packet(nfq_q_handle* /*queue*/, nfgenmsg* /*message*/, nfq_data* data, void* context) {
  auto* link = static_cast<Link*>(context);
  const nfqnl_msg_packet_hdr* header = nfq_get_msg_packet_hdr(data);
  if (header == nullptr) {
    return 0;
  }
  const std::uint32_t id = ntohl(header->packet_id);
  if (header->hook == NF_INET_PRE_ROUTING) {
    ++link->counters.to_server;
  } else {
    ++link->counters.to_client;
  }
  link->held.push_back(Held{id, now_ns() + link->one_way_ns});
  if (link->held.size() > link->counters.max_held) {
    link->counters.max_held = link->held.size();
  }
  return 0;
}

// The kernel's own counters for our queue: "queue_total ... queue_dropped user_dropped ...".
std::string kernel_drops() {
  FILE* file = std::fopen("/proc/net/netfilter/nfnetlink_queue", "re");
  if (file == nullptr) {
    return "?";
  }
  unsigned queue = 0;
  unsigned port = 0;
  unsigned total = 0;
  unsigned mode = 0;
  unsigned range = 0;
  unsigned dropped = 0;
  unsigned user_dropped = 0;
  std::string out = "?";
  if (std::fscanf(file, "%u %u %u %u %u %u %u", &queue, &port, &total, &mode, &range, &dropped,
                  &user_dropped) == 7) {
    out = std::to_string(dropped) + " queue full, " + std::to_string(user_dropped) + " undelivered";
  }
  std::fclose(file);
  return out;
}

void print_counters(const Link& link) {
  std::fprintf(stderr,
               "healer-netdelay: %llu packets to the server, %llu to the client, held at most "
               "%zu at once, %llu released over 1 ms late, kernel drops: %s\n",
               static_cast<unsigned long long>(link.counters.to_server),
               static_cast<unsigned long long>(link.counters.to_client), link.counters.max_held,
               static_cast<unsigned long long>(link.counters.late_releases),
               kernel_drops().c_str());
}

void usage() {
  std::fprintf(stderr, "usage: healer-netdelay --rtt-ms N [--watch-stdin]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  long rtt_ms = -1;
  bool watch_stdin = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--rtt-ms" && i + 1 < argc) {
      char* end = nullptr;
      rtt_ms = std::strtol(argv[++i], &end, 10);
      if (end == nullptr || *end != '\0' || rtt_ms < 0 || rtt_ms > 10000) {
        usage();
      }
    } else if (arg == "--watch-stdin") {
      watch_stdin = true;
    } else {
      usage();
    }
  }
  if (rtt_ms < 0) {
    usage();
  }
  if (::geteuid() != 0) {
    fail(3, "needs root (network namespaces, veth, iptables, NFQUEUE)");
  }
  // SIGTERM/SIGINT/SIGHUP end the loop through a signalfd; SIGUSR1 prints the counters.
  sigset_t signals;
  sigemptyset(&signals);
  for (const int signal_number : {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGPIPE}) {
    sigaddset(&signals, signal_number);
  }
  ::sigprocmask(SIG_BLOCK, &signals, nullptr);
  const int signal_fd = ::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  // A parent that dies without stopping us: stop as if it had sent SIGTERM.
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  // Release on time on a machine whose CPUs are busy with builds: a real-time priority (the
  // program sleeps but for microseconds per packet; not inherited by the commands it runs) and
  // no timer slack. Best effort.
  sched_param priority{};
  priority.sched_priority = 10;
  const bool realtime = ::sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &priority) == 0;
  ::prctl(PR_SET_TIMERSLACK, 1UL);

  // A free slot: its lock held for our lifetime, and no interface left from an earlier link
  // whose namespace is still held by a server process.
  int slot = -1;
  int lock_fd = -1;
  for (int candidate = 0; candidate < kSlots && slot < 0; ++candidate) {
    const std::string lock_path = "/run/healer-netdelay." + std::to_string(candidate) + ".lock";
    const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
      fail(3, "open " + lock_path + ": " + errno_text(errno));
    }
    const std::string root_if = "hnd" + std::to_string(candidate) + "r";
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0 && ::if_nametoindex(root_if.c_str()) == 0) {
      slot = candidate;
      lock_fd = fd;
    } else {
      ::close(fd);
    }
  }
  if (slot < 0) {
    fail(3, "no free slot (" + std::to_string(kSlots) + " links in use)");
  }
  const std::string octets = "10." + std::to_string(kFirstOctet2 + slot);
  const std::string client_address = octets + ".0.1";
  const std::string server_address = octets + ".0.2";
  const std::string hosts = octets + ".128.0/17";
  const std::string root_if = "hnd" + std::to_string(slot) + "r";
  const std::string ns_if = "hnd" + std::to_string(slot) + "n";

  const int root_ns = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (root_ns < 0) {
    fail(3, "open /proc/self/ns/net: " + errno_text(errno));
  }
  // Traffic to a link's addresses must never leave the machine, even after the link is gone (a
  // client still connecting to it would otherwise follow the default route): every slot's range
  // is unreachable in the root namespace unless a live link's more specific routes cover it.
  // Idempotent; it stays (one route, harmless) after the last link.
  must_run({"ip", "route", "replace", "unreachable", kAllSlots}, -1);
  if (::unshare(CLONE_NEWNET) != 0) {
    fail(3, "unshare(CLONE_NEWNET): " + errno_text(errno));
  }
  // From here on we live in the new namespace; commands for the root one get root_ns.
  const std::string pid = std::to_string(::getpid());
  must_run({"ip", "link", "add", root_if, "type", "veth", "peer", "name", ns_if, "netns", pid},
           root_ns);
  // Deletes the pair on every exit path below (an explicit stop, a failed setup step).
  struct PairGuard {
    std::string name;
    int netns;
    ~PairGuard() { run({"ip", "link", "del", name}, netns); }
  } pair_guard{root_if, root_ns};
  {
    // No IPv6 on the pair: router solicitations and DAD would only add packets to traces.
    const int here = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (::setns(root_ns, CLONE_NEWNET) == 0) {
      write_file("/proc/sys/net/ipv6/conf/" + root_if + "/disable_ipv6", "1");
      ::setns(here, CLONE_NEWNET);
    }
    ::close(here);
    write_file("/proc/sys/net/ipv6/conf/" + ns_if + "/disable_ipv6", "1");
  }
  must_run({"ip", "addr", "add", client_address + "/24", "dev", root_if}, root_ns);
  must_run({"ip", "link", "set", root_if, "up"}, root_ns);
  must_run({"ip", "route", "add", hosts, "via", server_address, "dev", root_if}, root_ns);
  must_run({"ip", "link", "set", "lo", "up"}, -1);
  must_run({"ip", "addr", "add", server_address + "/24", "dev", ns_if}, -1);
  must_run({"ip", "link", "set", ns_if, "up"}, -1);
  must_run({"ip", "route", "add", "local", hosts, "dev", "lo"}, -1);

  // The queue, bound before the rules that feed it.
  Link link;
  link.one_way_ns = rtt_ms * 1'000'000 / 2;
  nfq_handle* handle = nfq_open();
  if (handle == nullptr) {
    fail(3, "nfq_open: " + errno_text(errno) + " (no NFQUEUE support in this kernel?)");
  }
  nfq_unbind_pf(handle, AF_INET);  // pre-3.8 kernels want this; later ones ignore it
  if (nfq_bind_pf(handle, AF_INET) < 0) {
    fail(3, "nfq_bind_pf: " + errno_text(errno));
  }
  nfq_q_handle* queue = nfq_create_queue(handle, kQueueNum, &on_packet, &link);
  if (queue == nullptr) {
    fail(3, "nfq_create_queue: " + errno_text(errno));
  }
  if (nfq_set_mode(queue, NFQNL_COPY_META, 0) < 0) {
    fail(3, "nfq_set_mode: " + errno_text(errno));
  }
  nfq_set_queue_maxlen(queue, kQueueMaxLen);
  nfq_set_queue_flags(queue, NFQA_CFG_F_GSO, NFQA_CFG_F_GSO);
  nfnl_rcvbufsiz(nfq_nfnlh(handle), kReceiveBuffer);
  const int queue_fd = nfq_fd(handle);
  ::fcntl(queue_fd, F_SETFL, ::fcntl(queue_fd, F_GETFL) | O_NONBLOCK);

  // iptables-nft needs nf_tables with the xt compat layer; iptables-legacy the old tables.
  // Either feeds the same queue.
  std::string iptables;
  for (const char* candidate : {"iptables", "iptables-legacy"}) {
    if (run({candidate, "-w", "-t", "mangle", "-A", "PREROUTING", "-i", ns_if, "-j", "NFQUEUE",
             "--queue-num", std::to_string(kQueueNum)},
            -1) == 0) {
      iptables = candidate;
      break;
    }
  }
  if (iptables.empty()) {
    fail(3, "neither iptables nor iptables-legacy can add an NFQUEUE rule");
  }
  must_run({iptables, "-w", "-t", "mangle", "-A", "POSTROUTING", "-o", ns_if, "-j", "NFQUEUE",
            "--queue-num", std::to_string(kQueueNum)},
           -1);

  std::printf(
      "ready pid=%s netns=/proc/%s/ns/net client=%s server=%s hosts=%s rtt_ms=%ld slot=%d "
      "root_if=%s ns_if=%s realtime=%d\n",
      pid.c_str(), pid.c_str(), client_address.c_str(), server_address.c_str(), hosts.c_str(),
      rtt_ms, slot, root_if.c_str(), ns_if.c_str(), realtime ? 1 : 0);
  std::fflush(stdout);

  std::vector<char> buffer(256 * 1024);
  int exit_code = 0;
  bool running = true;
  while (running) {
    pollfd fds[3] = {{queue_fd, POLLIN, 0}, {signal_fd, POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
    const nfds_t count = watch_stdin ? 3 : 2;
    timespec timeout{};
    timespec* timeout_ptr = nullptr;
    if (!link.held.empty()) {
      const std::int64_t wait = std::max<std::int64_t>(0, link.held.front().due_ns - now_ns());
      timeout.tv_sec = wait / 1'000'000'000;
      timeout.tv_nsec = wait % 1'000'000'000;
      timeout_ptr = &timeout;
    }
    if (::ppoll(fds, count, timeout_ptr, nullptr) < 0 && errno != EINTR) {
      std::fprintf(stderr, "healer-netdelay: ppoll: %s\n", errno_text(errno).c_str());
      exit_code = 4;
      break;
    }
    if ((fds[0].revents & POLLIN) != 0) {
      for (;;) {
        const ssize_t got = ::recv(queue_fd, buffer.data(), buffer.size(), 0);
        if (got < 0) {
          if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ENOBUFS) {
            std::fprintf(stderr, "healer-netdelay: recv: %s\n", errno_text(errno).c_str());
            exit_code = 4;
            running = false;
          }
          // ENOBUFS: the kernel could not deliver a packet's notice and dropped that packet
          // (counted as "undelivered"); the others are unaffected.
          break;
        }
        nfq_handle_packet(handle, buffer.data(), static_cast<int>(got));
      }
    }
    // Release what is due: a prefix of the FIFO, so one batch verdict covers it.
    const std::int64_t now = now_ns();
    std::uint32_t last_id = 0;
    bool release = false;
    while (!link.held.empty() && link.held.front().due_ns <= now) {
      if (now - link.held.front().due_ns > 1'000'000) {
        ++link.counters.late_releases;
      }
      last_id = link.held.front().id;
      release = true;
      link.held.pop_front();
    }
    if (release && nfq_set_verdict_batch(queue, last_id, NF_ACCEPT) < 0) {
      std::fprintf(stderr, "healer-netdelay: verdict: %s\n", errno_text(errno).c_str());
    }
    if ((fds[1].revents & POLLIN) != 0) {
      signalfd_siginfo info{};
      while (::read(signal_fd, &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
        if (info.ssi_signo == SIGUSR1) {
          print_counters(link);
        } else if (info.ssi_signo != SIGPIPE) {
          running = false;
        }
      }
    }
    if (watch_stdin && (fds[2].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      char byte = 0;
      if (::read(STDIN_FILENO, &byte, 1) <= 0) {
        running = false;
      }
    }
  }
  print_counters(link);
  nfq_destroy_queue(queue);
  nfq_close(handle);
  ::close(lock_fd);
  return exit_code;  // pair_guard deletes the veth pair
}
