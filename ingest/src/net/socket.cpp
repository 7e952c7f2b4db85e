#include "net/socket.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>

#include "tributary/core/error.h"

namespace tributary::ingest::net {
namespace {

struct AddrInfo {
  addrinfo* list = nullptr;
  AddrInfo() = default;
  AddrInfo(const AddrInfo&) = delete;
  AddrInfo& operator=(const AddrInfo&) = delete;
  ~AddrInfo() {
    if (list != nullptr) ::freeaddrinfo(list);
  }
};

// Resolves "HOST:PORT" / "[V6]:PORT" for a socket of `type`: one to bind (passive) or to
// connect to.
void resolve(const std::string& address, int type, const std::string& what, AddrInfo& out, bool passive = true) {
  std::string host;
  std::string port;
  if (!address.empty() && address[0] == '[') {
    const auto close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':')
      throw core::Error(fmt::format("{}: '{}' is not [IPV6]:PORT", what, address));
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    const auto colon = address.rfind(':');
    if (colon == std::string::npos || colon == 0)
      throw core::Error(fmt::format("{}: '{}' is not HOST:PORT (e.g. 127.0.0.1:5170)", what, address));
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5 ||
      std::stoi(port) > 65535)
    throw core::Error(fmt::format("{}: '{}': port must be a number from 0 to 65535", what, address));
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = type;
  hints.ai_flags = (passive ? AI_PASSIVE : 0) | AI_NUMERICSERV;
  if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &out.list); rc != 0)
    throw core::Error(fmt::format("{}: cannot resolve '{}': {}", what, address, ::gai_strerror(rc)));
}

core::Fd bound_socket(const std::string& address, int type, const std::string& what) {
  AddrInfo ai;
  resolve(address, type, what, ai);
  int last = 0;
  for (const addrinfo* a = ai.list; a != nullptr; a = a->ai_next) {
    core::Fd fd(::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol));
    if (!fd.valid()) {
      last = errno;
      continue;
    }
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), a->ai_addr, a->ai_addrlen) == 0) return fd;
    last = errno;
  }
  throw core::Error(fmt::format("{}: cannot bind {}: {}", what, address, std::strerror(last)));
}

}  // namespace

core::Fd listen_tcp(const std::string& address, const std::string& what) {
  core::Fd fd = bound_socket(address, SOCK_STREAM, what);
  if (::listen(fd.get(), 1024) != 0) core::throw_errno(fmt::format("{}: listen on {}", what, address), errno);
  return fd;
}

core::Fd bind_udp(const std::string& address, std::size_t receive_buffer, const std::string& what) {
  core::Fd fd = bound_socket(address, SOCK_DGRAM, what);
  if (receive_buffer != 0) {
    const int size = static_cast<int>(std::min<std::size_t>(receive_buffer, INT32_MAX / 2));
    // The privileged variant passes net.core.rmem_max; without the capability, the plain one.
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
      ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  }
  return fd;
}

core::Fd connect_tcp(const std::string& address, const std::string& what) {
  AddrInfo ai;
  resolve(address, SOCK_STREAM, what, ai, /*passive=*/false);
  int last = EADDRNOTAVAIL;  // (an empty address list)
  for (const addrinfo* a = ai.list; a != nullptr; a = a->ai_next) {
    core::Fd fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (!fd.valid()) {
      last = errno;
      continue;
    }
    if (::connect(fd.get(), a->ai_addr, a->ai_addrlen) == 0) return fd;
    last = errno;
  }
  throw core::Error(fmt::format("{}: cannot connect to {}: {}", what, address, std::strerror(last)));
}

std::string local_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  char host[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return fmt::format("{}:{}", host, ntohs(in->sin_port));
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
  ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
  return fmt::format("[{}]:{}", host, ntohs(in6->sin6_port));
}

}  // namespace tributary::ingest::net
