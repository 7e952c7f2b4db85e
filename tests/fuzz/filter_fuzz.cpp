// Any text as a filter expression: it parses or throws core::Error, never crashes; what
// parses evaluates without crashing against events with and without the fields.
#include <string>

#include "tributary/analytics/filter.h"
#include "tributary/core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tributary::analytics;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  try {
    const FilterExpr e = FilterExpr::parse(in, [](std::string_view n) -> std::optional<FieldRef> {
      if (n == "a" || n == "b") return FieldRef{false, n == "a" ? 0u : 1u};
      if (n == "j") return FieldRef{true, 0};
      return std::nullopt;
    });
    (void)e.eval([](const FieldRef& r) -> std::optional<std::string_view> {
      if (r.joined) return std::nullopt;
      return r.index == 0 ? std::string_view("12.5") : std::string_view("text");
    });
    (void)e.eval([](const FieldRef&) -> std::optional<std::string_view> { return std::nullopt; });
  } catch (const tributary::core::Error&) {
  }
  return 0;
}
