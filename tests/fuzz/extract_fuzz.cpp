// Any bytes as a JSON or CSV event: extraction accepts or rejects with a reason, and the
// fields it returns point inside memory it owns.
#include <string>
#include <vector>

#include "tributary/analytics/extract.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tributary::analytics;
  static FieldExtractor json = [] {
    FieldExtractor e = FieldExtractor::json({"/user_id", "/a/b", "/list/1", "time_stamp"});
    e.set_optional({false, true, true, false});
    return e;
  }();
  static FieldExtractor csv = FieldExtractor::csv({"user_id", "item_id", "time_stamp"}, {"time_stamp", "user_id"});
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> out;
  std::size_t bad = 0;
  std::size_t total = 0;
  if (json.extract(in, out, &bad) == Reject::kNone)
    for (const auto& f : out) total += f.empty() ? 0 : static_cast<unsigned char>(f.front()) + f.size();
  if (csv.extract(in, out, &bad) == Reject::kNone)
    for (const auto& f : out) total += f.empty() ? 0 : static_cast<unsigned char>(f.back());
  return total == 42 ? 0 : 0;  // reads every byte returned: ASan checks they are live
}
