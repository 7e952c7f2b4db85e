// The one exception type of Tributary's start-up paths (config, mappings, opening channels).
// Hot paths never throw: they return status enums. Messages name what failed and where.
#pragma once

#include <stdexcept>
#include <string>

namespace tributary::core {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "what: strerror(errno)" as an Error, for failed system calls.
[[noreturn]] void throw_errno(const std::string& what, int err);

}  // namespace tributary::core
