// A TCP socket listening on a free loopback port, closed when it goes out of scope: a server
// for a test's clients, or a port a test wants taken.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <system_error>

#include "tributary/core/fd.h"

namespace tributary::testing {

class LoopbackListener {
 public:
  explicit LoopbackListener(int backlog = 16) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // port 0: the kernel picks a free one
    socklen_t len = sizeof a;
    if (!fd_.valid() || ::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(fd_.get(), backlog) != 0 || ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::system_error(errno, std::generic_category(), "listening on a loopback port");
    port_ = ntohs(a.sin_port);
  }
  [[nodiscard]] int fd() const noexcept { return fd_.get(); }
  [[nodiscard]] int port() const noexcept { return port_; }

 private:
  core::Fd fd_;
  int port_ = 0;
};

}  // namespace tributary::testing
