// FieldExtractor: simdjson On-Demand for JSON, RFC 4180 records (csv.h) for CSV.
#include "tributary/analytics/extract.h"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <fmt/format.h>

#include "csv.h"
#include "tributary/core/error.h"

namespace tributary::analytics {

std::string_view to_string(Reject r) noexcept {
  switch (r) {
    case Reject::kNone: return "ok";
    case Reject::kNotJson: return "not a JSON object";
    case Reject::kMissingField: return "missing field";
    case Reject::kWrongType: return "field is an object or array";
    case Reject::kFieldCount: return "wrong number of fields";
    case Reject::kBadQuote: return "CSV quote not closed, or text after a closing quote";
  }
  return "?";
}

struct FieldExtractor::Impl {
  bool is_json = true;
  // JSON
  std::vector<std::string> pointers;
  simdjson::ondemand::parser parser;
  std::vector<std::string> strings;   // unescaped string fields (stable across at_pointer rewinds)
  // CSV
  std::size_t columns = 0;
  std::vector<std::size_t> wanted;  // column index of each field
  char separator = ',';
  std::vector<std::string_view> cells;
  std::string csv_scratch;  // quoted cells, unescaped
  std::vector<bool> optional;  // per field: may be absent
  bool is_optional(std::size_t i) const { return i < optional.size() && optional[i]; }

  // Top-level fields only ("/name" pointers, at most 64): one pass over the object's fields
  // instead of one at_pointer walk from the start per field.
  std::vector<std::string> names;
  std::vector<std::uint64_t> same_name;  // per name: the names equal to it (itself included)
  bool top_level = false;
  // Each name with its closing quote as 16 bytes and a mask, where it fits: a key (as written,
  // escapes and all) is compared with two loads. The event copies carry 64 bytes of padding,
  // so 16 bytes from any key's first byte are inside them.
  struct Pattern {
    std::uint64_t lo = 0, hi = 0, mask_lo = 0, mask_hi = 0;
    bool fits = false;
  };
  std::vector<Pattern> patterns;
  // The names whose first (second) byte, as written with the closing quote, is the index: a
  // member's key is compared only with the names that agree on both, usually none or one.
  std::array<std::uint64_t, 256> first_byte{}, second_byte{};

  static Pattern pattern_of(std::string_view name) {
    Pattern p;
    if (name.size() + 1 > 16) return p;
    unsigned char bytes[16] = {}, mask[16] = {};
    std::memcpy(bytes, name.data(), name.size());
    bytes[name.size()] = '"';
    std::memset(mask, 0xff, name.size() + 1);
    std::memcpy(&p.lo, bytes, 8);
    std::memcpy(&p.hi, bytes + 8, 8);
    std::memcpy(&p.mask_lo, mask, 8);
    std::memcpy(&p.mask_hi, mask + 8, 8);
    p.fits = true;
    return p;
  }

  std::vector<char> buf;  // the event copy with simdjson's padding after it

  Reject fail(std::size_t* bad, std::size_t at, Reject r) const {
    if (bad) *bad = at;
    return r;
  }

  static std::string_view trimmed_token(simdjson::ondemand::value& v) {
    std::string_view raw = v.raw_json_token();  // up to the next token: blanks included
    while (!raw.empty() && static_cast<unsigned char>(raw.back()) <= ' ' &&
           (raw.back() == ' ' || raw.back() == '\n' || raw.back() == '\t' || raw.back() == '\r'))
      raw.remove_suffix(1);
    return raw;
  }

  // RFC 8259's number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?. `s` is a token of a
  // padded copy: 8 bytes from its first are readable.
  [[gnu::always_inline]] static bool json_number(std::string_view s) {
    if (s.size() - 1 < 8 && (s[0] != '0' || s.size() == 1)) {  // 1 to 8 bytes: all digits, 8 at once
      constexpr std::uint64_t kZeros = 0x3030303030303030ull, kHigh = 0x8080808080808080ull;
      std::uint64_t x;
      std::memcpy(&x, s.data(), 8);
      const std::uint64_t keep = ~0ull >> (64 - 8 * s.size());
      x = (x & keep) | (kZeros & ~keep);  // the bytes after the token read as '0'
      if ((((x + 0x4646464646464646ull) | (x - kZeros)) & kHigh) == 0) return true;
    }
    return json_number_slow(s);
  }
  [[gnu::noinline]] static bool json_number_slow(std::string_view s) {
    const auto digit = [&](std::size_t i) { return i < s.size() && static_cast<unsigned char>(s[i] - '0') < 10; };
    std::size_t i = s.size() != 0 && s[0] == '-' ? 1 : 0;
    if (!digit(i)) return false;
    if (s[i++] != '0')
      while (digit(i)) ++i;
    if (i == s.size()) return true;  // an integer: the usual case
    if (s[i] == '.') {
      if (!digit(++i)) return false;
      while (digit(i)) ++i;
    }
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      ++i;
      if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
      if (!digit(i)) return false;
      while (digit(i)) ++i;
    }
    return i == s.size();
  }

  // The text of one field's value into out[i] (views into the event copy or the parser's string
  // buffer: valid until the next event).
  [[gnu::always_inline]] Reject take(simdjson::ondemand::value v, std::size_t i, std::vector<std::string_view>& out, std::size_t* bad,
              bool copy_strings) {
    simdjson::ondemand::json_type t;
    if (v.type().get(t) != simdjson::SUCCESS) return fail(bad, pointers.size(), Reject::kNotJson);
    switch (t) {
      case simdjson::ondemand::json_type::string: {
        std::string_view s;
        if (v.get_string().get(s) != simdjson::SUCCESS) return fail(bad, pointers.size(), Reject::kNotJson);
        if (copy_strings) {
          strings[i].assign(s);  // the parser's string buffer is reused by at_pointer rewinds
          out[i] = strings[i];   // and by the next document of a batch
        } else {
          out[i] = s;  // in the parser's string buffer: nothing rewinds before the next event
        }
        return Reject::kNone;
      }
      case simdjson::ondemand::json_type::number:
      case simdjson::ondemand::json_type::boolean: {
        // The token as written, checked: On-Demand types a value by its first byte, so "12abc"
        // and "trueish" would pass as a number and a boolean.
        const std::string_view raw = trimmed_token(v);
        if (t == simdjson::ondemand::json_type::number ? !json_number(raw) : raw != "true" && raw != "false")
          return fail(bad, pointers.size(), Reject::kNotJson);
        out[i] = raw;  // points into the event copy, stable until the next call
        return Reject::kNone;
      }
      case simdjson::ondemand::json_type::null:
        if (trimmed_token(v) != "null") return fail(bad, pointers.size(), Reject::kNotJson);
        if (is_optional(i)) {
          out[i] = std::string_view();
          return Reject::kNone;
        }
        return fail(bad, i, Reject::kMissingField);
      default:
        return fail(bad, i, Reject::kWrongType);
    }
  }

  // The top-level fields of one document (a parsed event or one of a batch's documents).
  template <typename Doc>
  Reject fields_of(Doc& doc, std::vector<std::string_view>& out, std::size_t* bad, bool copy_strings) {
    simdjson::ondemand::object obj;
    if (doc.get_object().get(obj) != simdjson::SUCCESS) return fail(bad, pointers.size(), Reject::kNotJson);
    // One forward pass over the members; each wanted name takes its first occurrence, whatever
    // order the names are asked in. The pass goes on to the object's end once all are found:
    // On-Demand checks the members it walks (keys, colons, commas, the closing brace), so an
    // event cut short or with a second object after its own is rejected, not counted by its
    // first fields. Values not wanted are skipped by their brackets, not checked.
    const std::uint64_t all = names.size() == 64 ? ~0ull : (1ull << names.size()) - 1;
    const Pattern* const pattern = patterns.data();
    std::uint64_t found = 0;
    for (auto member : obj) {
      simdjson::ondemand::field f;
      if (std::move(member).get(f) != simdjson::SUCCESS) return fail(bad, pointers.size(), Reject::kNotJson);
      const simdjson::ondemand::raw_json_string raw_key = f.key();
      const char* key = raw_key.raw();
      std::uint64_t lo, hi;
      std::memcpy(&lo, key, 8);
      std::memcpy(&hi, key + 8, 8);
      // Only the names not found yet whose first two bytes agree with the key's, lowest first.
      std::uint64_t candidates = all & ~found & first_byte[static_cast<unsigned char>(lo)] &
                                 second_byte[static_cast<unsigned char>(lo >> 8)];
      for (; candidates != 0; candidates &= candidates - 1) {
        const auto i = static_cast<std::size_t>(std::countr_zero(candidates));
        const Pattern& p = pattern[i];
        // Longer names: simdjson's comparison (it may read as many bytes as the name from a
        // shorter key: inside the padding up to 64, byte by byte beyond).
        if (p.fits ? ((lo & p.mask_lo) != p.lo) | ((hi & p.mask_hi) != p.hi) : !raw_key.unsafe_is_equal(names[i]))
          continue;
        if (const Reject r = take(f.value(), i, out, bad, copy_strings); r != Reject::kNone) return r;
        // Two fields may name one key (say, one as a window's time, one for a label): both get it.
        for (std::uint64_t same = same_name[i] & ~(1ull << i); same != 0; same &= same - 1)
          out[static_cast<std::size_t>(std::countr_zero(same))] = out[i];
        found |= same_name[i];
        break;
      }
    }
    if (found != all)
      for (std::size_t i = 0; i < names.size(); ++i) {
        if ((found >> i & 1) != 0) continue;
        if (!is_optional(i)) return fail(bad, i, Reject::kMissingField);
        out[i] = std::string_view();
      }
    return Reject::kNone;
  }

  Reject extract_json(std::string_view event, std::vector<std::string_view>& out, std::size_t* bad) {
    if (buf.size() < event.size() + simdjson::SIMDJSON_PADDING) buf.resize(event.size() + simdjson::SIMDJSON_PADDING);
    std::memcpy(buf.data(), event.data(), event.size());
    std::memset(buf.data() + event.size(), 0, simdjson::SIMDJSON_PADDING);
    simdjson::ondemand::document doc;
    if (parser.iterate(buf.data(), event.size(), buf.size()).get(doc) != simdjson::SUCCESS)
      return fail(bad, pointers.size(), Reject::kNotJson);
    out.resize(pointers.size());
    if (top_level) {
      if (const Reject r = fields_of(doc, out, bad, /*copy_strings=*/false); r != Reject::kNone) return r;
      // Nothing after the object: "{...}{...}" or "{...} x" is not one event.
      return doc.current_location().error() == simdjson::OUT_OF_BOUNDS ? Reject::kNone
                                                                         : fail(bad, pointers.size(), Reject::kNotJson);
    }
    simdjson::ondemand::json_type root_type;
    if (doc.type().get(root_type) != simdjson::SUCCESS || root_type != simdjson::ondemand::json_type::object)
      return fail(bad, pointers.size(), Reject::kNotJson);
    for (std::size_t i = 0; i < pointers.size(); ++i) {
      simdjson::ondemand::value v;
      const auto err = doc.at_pointer(pointers[i]).get(v);
      if (err == simdjson::NO_SUCH_FIELD || err == simdjson::INVALID_JSON_POINTER || err == simdjson::INDEX_OUT_OF_BOUNDS) {
        if (is_optional(i)) {
          out[i] = std::string_view();
          continue;
        }
        return fail(bad, i, Reject::kMissingField);
      }
      if (err != simdjson::SUCCESS) return fail(bad, pointers.size(), Reject::kNotJson);
      if (const Reject r = take(v, i, out, bad, /*copy_strings=*/true); r != Reject::kNone) return r;
    }
    // The members walked to the object's end and nothing after it, as the top-level pass does
    // (the strings taken are copies: the rewind does not touch them).
    doc.rewind();
    simdjson::ondemand::object obj;
    if (doc.get_object().get(obj) != simdjson::SUCCESS) return fail(bad, pointers.size(), Reject::kNotJson);
    for (auto member : obj) {
      simdjson::ondemand::field f;
      if (std::move(member).get(f) != simdjson::SUCCESS) return fail(bad, pointers.size(), Reject::kNotJson);
    }
    return doc.current_location().error() == simdjson::OUT_OF_BOUNDS ? Reject::kNone
                                                                       : fail(bad, pointers.size(), Reject::kNotJson);
  }

  // Batches: one copy of the events, newline-separated, parsed with iterate_many.
  simdjson::ondemand::parser batch_parser;
  std::vector<char> batch_buf;
  std::vector<std::size_t> starts;  // where each event's copy begins in batch_buf
  std::uint64_t in_batches = 0;

  // Batches are cut at this many bytes: enough to spread stage 1's cost, small enough that the
  // batch parser (about 6 bytes per byte of input) stays a few hundred KiB per analyzer.
  static constexpr std::size_t kBatchBytes = 64 << 10;

  void extract_batch(std::span<const std::string_view> events, std::vector<std::string_view>& out,
                     const EachEvent& each) {
    std::size_t begin = 0;
    while (begin < events.size()) {
      std::size_t end = begin, bytes = 0;
      while (end < events.size() && (end == begin || bytes + events[end].size() + 1 <= kBatchBytes))
        bytes += events[end++].size() + 1;
      std::size_t next = begin;  // the first event not handed out
      // An event that breaks the framing is parsed alone and batching resumes after it, a few
      // times per pass: a stream of mostly malformed events is parsed one by one instead of
      // running stage 1 over the same bytes again and again.
      for (int tries = 0; tries < 4 && is_json && top_level && end - next > 1; ++tries) {
        const std::size_t from = next;
        const std::size_t done = batch_json(events.subspan(from, end - from), out,
                                            [&](std::size_t i, Reject r, std::size_t bad) { each(from + i, r, bad); });
        next += done;
        in_batches += done;
        if (next == end) break;
        alone(events, next++, out, each);
      }
      for (; next < end; ++next) alone(events, next, out, each);
      begin = end;
    }
  }

  void alone(std::span<const std::string_view> events, std::size_t i, std::vector<std::string_view>& out,
             const EachEvent& each) {
    std::size_t bad = 0;
    const Reject r = extract(events[i], out, &bad);
    each(i, r, bad);
  }

  Reject extract(std::string_view event, std::vector<std::string_view>& out, std::size_t* bad) {
    return is_json ? extract_json(event, out, bad) : extract_csv(event, out, bad);
  }

  // Hands out events in order while each document is proven to be exactly its event: it starts
  // at the event's first byte and the next document starts at the next event's first byte (or
  // the stream ends after the last event). Returns how many were handed out; the caller parses
  // the rest one by one.
  std::size_t batch_json(std::span<const std::string_view> events, std::vector<std::string_view>& out,
                         const EachEvent& each) {
    std::size_t total = 0;
    for (const auto& e : events) total += e.size() + 1;
    batch_buf.resize(total + simdjson::SIMDJSON_PADDING);
    starts.clear();
    std::size_t at = 0;
    for (const auto& e : events) {
      // An event with leading whitespace cannot be framed here. Nor can one whose last byte
      // (before trailing blanks) is not '}': parsed alone, On-Demand rejects a root object whose
      // last token is not its '}', a check a document of a stream does not get.
      if (e.empty() || e.front() == ' ' || e.front() == '\t' || e.front() == '\r' || e.front() == '\n') break;
      const std::size_t last = e.find_last_not_of(" \t\r\n");
      if (last == std::string_view::npos || e[last] != '}') break;
      starts.push_back(at);
      std::memcpy(batch_buf.data() + at, e.data(), e.size());
      at += e.size();
      batch_buf[at++] = '\n';
    }
    if (starts.size() < 2) return 0;
    std::memset(batch_buf.data() + at, 0, simdjson::SIMDJSON_PADDING);
    simdjson::ondemand::document_stream docs;
    // One capacity for every batch (at <= kBatchBytes whenever two events frame): the parser's
    // buffers are allocated once, not at every batch of another size.
    if (batch_parser.iterate_many(batch_buf.data(), at, std::max(at, kBatchBytes)).get(docs) != simdjson::SUCCESS)
      return 0;
    std::size_t k = 0;  // the document the iterator is at is event k's, if proven
    // Event k-1 was parsed (into `out`) and waits for its proof, which comes before the next
    // document is parsed: its fields are still there when it is handed out.
    bool pending = false;
    Reject pending_reject = Reject::kNone;
    std::size_t pending_bad = 0;
    auto hand_out = [&] {
      each(k - 1, pending_reject, pending_bad);
      pending = false;
    };
    for (auto it = docs.begin(); it != docs.end(); ++it) {
      if (k >= starts.size() || it.current_index() != starts[k]) return pending ? k - 1 : k;
      if (pending) hand_out();
      simdjson::ondemand::document_reference doc;
      if ((*it).get(doc) != simdjson::SUCCESS) return k;
      std::size_t bad = 0;
      out.resize(pointers.size());
      const Reject r = fields_of(doc, out, &bad, /*copy_strings=*/true);
      if (r == Reject::kNotJson) return k;  // perhaps not framed as assumed: one by one from here
      pending = true;
      pending_reject = r;
      pending_bad = bad;
      ++k;
    }
    if (k != starts.size() || docs.truncated_bytes() != 0) return pending ? k - 1 : k;
    if (pending) hand_out();
    return k;
  }

  Reject extract_csv(std::string_view event, std::vector<std::string_view>& out, std::size_t* bad) {
    if (detail::split_csv(event, separator, cells, csv_scratch) != detail::CsvRecord::kOk) {
      if (bad) *bad = wanted.size();
      return Reject::kBadQuote;
    }
    if (cells.size() != columns) {
      if (bad) *bad = wanted.size();
      return Reject::kFieldCount;
    }
    out.resize(wanted.size());
    for (std::size_t i = 0; i < wanted.size(); ++i)
      out[i] = cells[wanted[i]].empty() && is_optional(i) ? std::string_view() : cells[wanted[i]];
    return Reject::kNone;
  }
};

FieldExtractor::FieldExtractor(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
FieldExtractor::FieldExtractor(FieldExtractor&&) noexcept = default;
void FieldExtractor::set_optional(std::vector<bool> optional) {
  // Fields naming one key share its value, so they share whether it may be missing: optional
  // only if all of them are (or the outcome would depend on the order they were declared in).
  Impl& x = *impl_;
  for (std::size_t i = 0; i < x.same_name.size() && i < optional.size(); ++i)
    for (std::uint64_t same = x.same_name[i]; same != 0; same &= same - 1) {
      const auto j = static_cast<std::size_t>(std::countr_zero(same));
      if (j >= optional.size() || !optional[j]) optional[i] = false;
    }
  x.optional = std::move(optional);
}
FieldExtractor& FieldExtractor::operator=(FieldExtractor&&) noexcept = default;
FieldExtractor::~FieldExtractor() = default;

FieldExtractor FieldExtractor::json(std::vector<std::string> pointers) {
  auto impl = std::make_unique<Impl>();
  for (auto& p : pointers)
    if (p.empty() || p[0] != '/') p = "/" + p;  // "user_id" means "/user_id"
  impl->strings.resize(pointers.size());
  // "/name" with nothing to unescape (no '~', no '/' inside, no character a JSON key would
  // escape): matched against the object's keys in one pass.
  impl->top_level = pointers.size() <= 64;
  for (const auto& p : pointers) {
    const std::string_view name = std::string_view(p).substr(1);
    const bool plain = std::none_of(name.begin(), name.end(), [](char c) {
      return c == '/' || c == '~' || c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20;
    });
    impl->top_level = impl->top_level && plain;
    const std::uint64_t bit = 1ull << (impl->names.size() % 64);
    const std::string quoted = std::string(name) + '"';  // as the key is written
    impl->first_byte[static_cast<unsigned char>(quoted[0])] |= bit;
    if (quoted.size() >= 2) {
      impl->second_byte[static_cast<unsigned char>(quoted[1])] |= bit;
    } else {  // the empty name: whatever follows its quote
      for (auto& m : impl->second_byte) m |= bit;
    }
    impl->names.emplace_back(name);
    impl->patterns.push_back(Impl::pattern_of(name));
  }
  for (std::size_t i = 0; i < impl->names.size(); ++i) {
    std::uint64_t same = 0;
    for (std::size_t j = 0; j < impl->names.size() && j < 64; ++j)
      if (impl->names[j] == impl->names[i]) same |= 1ull << j;
    impl->same_name.push_back(same);
  }
  impl->pointers = std::move(pointers);
  return FieldExtractor(std::move(impl));
}

FieldExtractor FieldExtractor::csv(std::vector<std::string> header, const std::vector<std::string>& fields,
                                   char separator) {
  auto impl = std::make_unique<Impl>();
  impl->is_json = false;
  impl->separator = separator;
  impl->columns = header.size();
  for (const auto& f : fields) {
    const auto it = std::find(header.begin(), header.end(), f);
    if (it == header.end()) throw core::Error(fmt::format("CSV field '{}' is not in the header", f));
    impl->wanted.push_back(static_cast<std::size_t>(it - header.begin()));
  }
  return FieldExtractor(std::move(impl));
}

Reject FieldExtractor::extract(std::string_view event, std::vector<std::string_view>& out, std::size_t* bad_field) {
  return impl_->extract(event, out, bad_field);
}

std::uint64_t FieldExtractor::parsed_in_batches() const noexcept { return impl_->in_batches; }

void FieldExtractor::extract_batch(std::span<const std::string_view> events, std::vector<std::string_view>& out,
                                   const EachEvent& each) {
  impl_->extract_batch(events, out, each);
}

}  // namespace tributary::analytics
