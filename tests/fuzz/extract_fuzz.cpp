// Any bytes as a JSON or CSV event: extraction accepts or rejects with a reason, and the
// fields it returns point inside memory it owns. The same bytes cut into events at 0xFE are
// also extracted as one batch (iterate_many over the batch's copy), which must give every
// event exactly what extracting it alone gives.
#include <cstdlib>
#include <string>
#include <vector>

#include "tributary/analytics/extract.h"

namespace {
using namespace tributary::analytics;

FieldExtractor make_json() {
  FieldExtractor e = FieldExtractor::json({"/user_id", "/a/b", "/list/1", "time_stamp"});
  e.set_optional({false, true, true, false});
  return e;
}

FieldExtractor make_top_level() {
  // Names of 16 bytes and more are compared by simdjson, shorter ones by masked loads.
  FieldExtractor e = FieldExtractor::json({"user_id", "time_stamp", "note", "a_name_of_24_characters_"});
  e.set_optional({false, false, true, true});
  return e;
}

struct Result {
  Reject reject;
  std::size_t bad;
  std::vector<std::string> fields;
  bool operator==(const Result&) const = default;
};

void check_batch(FieldExtractor& x, const std::vector<std::string_view>& events) {
  std::vector<std::string_view> out;
  std::vector<Result> alone;
  for (const auto& e : events) {
    std::size_t bad = 0;
    const Reject r = x.extract(e, out, &bad);
    alone.push_back({r, r == Reject::kNone ? 0 : bad, r == Reject::kNone ? std::vector<std::string>(out.begin(), out.end())
                                                                         : std::vector<std::string>{}});
  }
  std::size_t next = 0;
  x.extract_batch(events, out, [&](std::size_t i, Reject r, std::size_t bad) {
    const Result got{r, r == Reject::kNone ? 0 : bad,
                     r == Reject::kNone ? std::vector<std::string>(out.begin(), out.end()) : std::vector<std::string>{}};
    if (i != next++ || !(got == alone[i])) std::abort();  // a batch changed an event's outcome
  });
  if (next != events.size()) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static FieldExtractor json = make_json();
  static FieldExtractor top = make_top_level();
  static FieldExtractor csv = FieldExtractor::csv({"user_id", "item_id", "time_stamp"}, {"time_stamp", "user_id"});
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> out;
  std::size_t bad = 0;
  std::size_t total = 0;
  if (json.extract(in, out, &bad) == Reject::kNone)
    for (const auto& f : out) total += f.empty() ? 0 : static_cast<unsigned char>(f.front()) + f.size();
  if (csv.extract(in, out, &bad) == Reject::kNone)
    for (const auto& f : out) total += f.empty() ? 0 : static_cast<unsigned char>(f.back());
  std::vector<std::string_view> events;
  for (std::size_t start = 0;;) {
    const std::size_t cut = in.find('\xfe', start);
    events.push_back(in.substr(start, cut == std::string_view::npos ? std::string_view::npos : cut - start));
    if (cut == std::string_view::npos) break;
    start = cut + 1;
  }
  check_batch(top, events);
  return total == 42 ? 0 : 0;  // reads every byte returned: ASan checks they are live
}
