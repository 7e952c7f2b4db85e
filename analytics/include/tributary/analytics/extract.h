// Field extraction from one event, the first step of every analysis: JSON events parsed with
// simdjson On-Demand (fields addressed by JSON pointer, e.g. "/user_id"), or CSV lines (fields
// by name from a declared header). A malformed event gives a reason, never an exception: the
// analyzer counts it, keeps a sample, and goes on.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tributary::analytics {

enum class Reject : std::uint8_t {
  kNone,
  kNotJson,       // the event does not parse as a JSON object
  kMissingField,  // a wanted field is absent or null
  kWrongType,     // a wanted field is an object or an array
  kFieldCount,    // CSV: not as many fields as the header
  kBadQuote,      // CSV: a quoted field not closed, or text after its closing quote
};
[[nodiscard]] std::string_view to_string(Reject r) noexcept;

class FieldExtractor {
 public:
  // Fields by JSON pointer ("/a/b").
  static FieldExtractor json(std::vector<std::string> pointers);
  // Fields by name from `header`; events are RFC 4180 records (a field may be quoted:
  // "Beijing, China", "a ""b""") with `separator` between fields.
  static FieldExtractor csv(std::vector<std::string> header, const std::vector<std::string>& fields,
                            char separator = ',');

  // Fields that may be absent (missing or null; an empty CSV cell): extract() then gives a
  // view with a null data() for them instead of rejecting the event.
  void set_optional(std::vector<bool> optional);

  FieldExtractor(FieldExtractor&&) noexcept;
  FieldExtractor& operator=(FieldExtractor&&) noexcept;
  ~FieldExtractor();

  // Fills `out` with the text of each field, in the order given: strings unescaped, numbers and
  // booleans as written. Top-level fields ("/name") are read in one pass over the object (the
  // first occurrence of a name wins; a reject names the first offending field in the event's
  // own order), deeper ones with at_pointer. Views stay valid until the next call. On a reject, `bad_field` (if
  // given) is the index of the offending field (or out.size() when the event itself is bad).
  [[nodiscard]] Reject extract(std::string_view event, std::vector<std::string_view>& out,
                               std::size_t* bad_field = nullptr);

  // The same for many events, in order: `each(i, reject, bad_field)` is called once per event
  // with `out` filled as extract() fills it, and gives every event the outcome extract() gives
  // it. JSON events are parsed together (simdjson iterate_many over one copy of the batch), and
  // each document is checked to be exactly its event: an event that is not one document (not
  // JSON, two documents, half of one) is parsed alone and batching resumes after it (a few
  // times per 64 KiB; past that, the rest is parsed one by one).
  using EachEvent = std::function<void(std::size_t index, Reject reject, std::size_t bad_field)>;
  void extract_batch(std::span<const std::string_view> events, std::vector<std::string_view>& out,
                     const EachEvent& each);
  // Events of batches whose document was parsed with the batch (the others were parsed alone).
  [[nodiscard]] std::uint64_t parsed_in_batches() const noexcept;

 private:
  struct Impl;
  explicit FieldExtractor(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tributary::analytics
