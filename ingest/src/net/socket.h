// Sockets of the network sources (listening) and of their clients (the replayer): "HOST:PORT" or "[V6]:PORT" parsed once at start-up
// (errors name the option and the value), sockets non-blocking and close-on-exec.
#pragma once

#include <cstddef>
#include <string>

#include "tributary/core/fd.h"

namespace tributary::ingest::net {

// A TCP listener on `address` (SO_REUSEADDR, backlog 1024). Throws core::Error.
[[nodiscard]] core::Fd listen_tcp(const std::string& address, const std::string& what);
// A UDP socket bound to `address`, with a receive buffer of `receive_buffer` bytes if non-zero.
// Throws core::Error.
[[nodiscard]] core::Fd bind_udp(const std::string& address, std::size_t receive_buffer, const std::string& what);
// A blocking TCP connection to `address` (close-on-exec). Throws core::Error naming `what`.
[[nodiscard]] core::Fd connect_tcp(const std::string& address, const std::string& what);
// The bound address of a socket, "127.0.0.1:5170" or "[::1]:5170".
[[nodiscard]] std::string local_address(int fd);

}  // namespace tributary::ingest::net
