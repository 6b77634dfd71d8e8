#pragma once

#include <cstdint>

namespace healer::test {

/// A 127.0.0.1 port where nothing listens right now: bound to port 0, read back, closed. Connecting
/// to it is refused; it is also how the fixtures pick a port for a server. Another process may
/// take the port afterwards, so use it at once (servers retry on "address in use").
std::uint16_t closed_port();

/// True when a TCP socket on 127.0.0.1:`port` is in LISTEN state, read from /proc/net/tcp
/// without connecting (a probe connection would show up in the server's log and counters).
bool is_listening(std::uint16_t port);

/// The same for a socket on any address (0.0.0.0) or on 127.0.0.1, read from `tcp_table`:
/// /proc/<pid>/net/tcp shows the table of that process's network namespace.
bool is_listening(std::uint16_t port, const char* tcp_table);

}  // namespace healer::test
