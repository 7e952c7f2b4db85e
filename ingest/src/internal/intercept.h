// Interceptors: per-source steps every event passes on its way into the channel, in the
// order configured (Flume's interceptors, Fluent Bit's grep and record_modifier filters).
//
//   grep    include = "RE" keeps only matching events; exclude = "RE" drops matching ones
//           (RE2 syntax: linear time, no backtracking blow-up on hostile lines). Dropped
//           events are counted (`filtered`) and take no sequence number: the source's
//           sequence stays dense, so a filter never looks like a loss downstream.
//   fields  adds static fields (`add`), the host name (`host = "KEY"`) and the ingest time
//           (`timestamp = "KEY"`, RFC 3339 UTC with milliseconds) to JSON-object events; an
//           event that is not a JSON object becomes {"<wrap>": "<event>", ...} (wrap =
//           "message" by default). The object test is cheap (first and last non-blank
//           bytes are braces); the rest of the event is not re-validated.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tributary/ingest/source.h"

namespace tributary::ingest::detail {

// Rewritten events of one batch; views stay valid until clear().
class Arena {
 public:
  [[nodiscard]] char* allocate(std::size_t n);
  [[nodiscard]] std::string_view store(std::string_view s);
  void clear() noexcept;

 private:
  std::vector<std::unique_ptr<char[]>> blocks_;
  std::vector<std::size_t> sizes_;
  std::size_t block_ = 0;  // current block
  std::size_t used_ = 0;   // bytes used in it
};

class InterceptorChain {
 public:
  // Compiles the specs; throws core::Error naming the interceptor and the problem.
  explicit InterceptorChain(const std::vector<InterceptorSpec>& specs);
  ~InterceptorChain();
  InterceptorChain(const InterceptorChain&) = delete;
  InterceptorChain& operator=(const InterceptorChain&) = delete;

  // The event as it goes on (itself, or rewritten into `arena`), or nullopt: dropped.
  [[nodiscard]] std::optional<std::string_view> apply(std::string_view event, Arena& arena) const;

  struct Step;  // one interceptor (defined in intercept.cpp)

 private:
  std::vector<std::unique_ptr<Step>> steps_;
};

}  // namespace tributary::ingest::detail
