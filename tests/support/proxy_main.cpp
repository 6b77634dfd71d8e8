// healer-testbed-proxy: the test bed's DelayProxy and BlackholeProxy as a command, for benchmarks
// and scripts that run outside GoogleTest.
//
//   healer-testbed-proxy --target 127.0.0.1:2222 --delay-ms 25 [--listen 127.0.0.1:0]
//   healer-testbed-proxy --blackhole [--listen 127.0.0.1:0]
//
// Prints "port=N" (the bound port) as its first line, then serves until SIGTERM or SIGINT.

#include <arpa/inet.h>
#include <sys/resource.h>

#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "blackhole_proxy.hpp"
#include "delay_proxy.hpp"

namespace {

constexpr std::string_view kUsage =
    "usage: healer-testbed-proxy [--listen 127.0.0.1:PORT] --target 127.0.0.1:PORT\n"
    "                            [--delay-ms N | --rtt-ms N]\n"
    "       healer-testbed-proxy [--listen 127.0.0.1:PORT] --blackhole\n"
    "\n"
    "  --listen ADDR:PORT  where to listen (default 127.0.0.1:0, any free port)\n"
    "  --target ADDR:PORT  where to relay each connection\n"
    "  --delay-ms N        one-way delay added in each direction (round trip grows by 2N)\n"
    "  --rtt-ms N          round-trip time to add (N/2 each way); alternative to --delay-ms\n"
    "  --blackhole         accept connections and never send anything\n"
    "\n"
    "Addresses are IPv4 literals in 127.0.0.0/8. Prints \"port=N\" once listening, then serves\n"
    "until SIGTERM or SIGINT. Exit status 2 on bad arguments, 1 when it cannot listen.\n";

// A command-line problem: reported on one line, exit status 2.
struct UsageError {
  std::string message;
};

struct Endpoint {
  std::string address;
  std::uint16_t port = 0;
};

struct Arguments {
  Endpoint listen{"127.0.0.1", 0};
  std::optional<Endpoint> target;
  std::optional<std::chrono::microseconds> one_way_delay;
  bool blackhole = false;
};

template <class Integer>
Integer parse_integer(std::string_view text, Integer max, std::string_view what) {
  Integer value{};
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value > max) {
    throw UsageError{std::string(what) + ": not a number in 0.." + std::to_string(max) + ": '" +
                     std::string(text) + "'"};
  }
  return value;
}

Endpoint parse_endpoint(std::string_view text, std::string_view option) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    throw UsageError{std::string(option) + ": expected ADDRESS:PORT, got '" + std::string(text) +
                     "'"};
  }
  Endpoint endpoint;
  endpoint.address = std::string(text.substr(0, colon));
  endpoint.port = parse_integer<std::uint16_t>(text.substr(colon + 1), 65535, option);
  in_addr parsed{};
  if (::inet_pton(AF_INET, endpoint.address.c_str(), &parsed) != 1) {
    throw UsageError{std::string(option) + ": not an IPv4 address: '" + endpoint.address + "'"};
  }
  // The test bed lives on loopback; refusing anything else keeps a typo off the network.
  if ((ntohl(parsed.s_addr) >> 24) != 127) {
    throw UsageError{std::string(option) + ": only 127.0.0.0/8 is allowed, got '" +
                     endpoint.address + "'"};
  }
  return endpoint;
}

Arguments parse_arguments(int argc, char** argv) {
  Arguments arguments;
  bool listen_seen = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view option = argv[i];
    const auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) {
        throw UsageError{std::string(option) + " needs a value"};
      }
      return argv[++i];
    };
    if (option == "--listen") {
      if (listen_seen) {
        throw UsageError{"--listen given twice"};
      }
      listen_seen = true;
      arguments.listen = parse_endpoint(value(), option);
    } else if (option == "--target") {
      if (arguments.target) {
        throw UsageError{"--target given twice"};
      }
      arguments.target = parse_endpoint(value(), option);
    } else if (option == "--delay-ms" || option == "--rtt-ms") {
      if (arguments.one_way_delay) {
        throw UsageError{"give one of --delay-ms and --rtt-ms, once"};
      }
      const auto millis = parse_integer<std::uint32_t>(value(), 600000, option);
      const std::chrono::microseconds delay = std::chrono::milliseconds(millis);
      arguments.one_way_delay = option == "--rtt-ms" ? delay / 2 : delay;
    } else if (option == "--blackhole") {
      arguments.blackhole = true;
    } else {
      throw UsageError{"unknown argument '" + std::string(option) + "' (see --help)"};
    }
  }
  if (arguments.blackhole && (arguments.target || arguments.one_way_delay)) {
    throw UsageError{"--blackhole takes no --target, --delay-ms or --rtt-ms"};
  }
  if (!arguments.blackhole && !arguments.target) {
    throw UsageError{"--target ADDRESS:PORT (or --blackhole) is required"};
  }
  return arguments;
}

// Benchmarks open hundreds of connections, two descriptors each: lift the soft limit.
void raise_descriptor_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
      std::fputs(kUsage.data(), stdout);
      return 0;
    }
  }
  Arguments arguments;
  try {
    arguments = parse_arguments(argc, argv);
  } catch (const UsageError& error) {
    std::fprintf(stderr, "healer-testbed-proxy: %s\n", error.message.c_str());
    return 2;
  }

  // Block the stop signals before any thread exists, so every thread inherits the mask and
  // sigwait below is the only place they are delivered.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  raise_descriptor_limit();

  std::unique_ptr<healer::test::DelayProxy> delay_proxy;
  std::unique_ptr<healer::test::BlackholeProxy> blackhole;
  std::uint16_t port = 0;
  try {
    if (arguments.blackhole) {
      blackhole = std::make_unique<healer::test::BlackholeProxy>(arguments.listen.address,
                                                                 arguments.listen.port);
      blackhole->start();
      port = blackhole->port();
    } else {
      healer::test::DelayProxy::Options options;
      options.listen_host = arguments.listen.address;
      options.listen_port = arguments.listen.port;
      options.target_host = arguments.target->address;
      options.target_port = arguments.target->port;
      options.one_way_delay = arguments.one_way_delay.value_or(std::chrono::microseconds(0));
      delay_proxy = std::make_unique<healer::test::DelayProxy>(options);
      delay_proxy->start();
      port = delay_proxy->port();
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "healer-testbed-proxy: cannot listen on %s:%u: %s\n",
                 arguments.listen.address.c_str(), static_cast<unsigned>(arguments.listen.port),
                 error.what());
    return 1;
  }

  std::printf("port=%u\n", static_cast<unsigned>(port));
  std::fflush(stdout);

  int received = 0;
  while (sigwait(&stop_signals, &received) != 0) {
  }
  if (delay_proxy) {
    delay_proxy->stop();
  }
  if (blackhole) {
    blackhole->stop();
  }
  return 0;
}
