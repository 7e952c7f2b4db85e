// FieldExtractor: simdjson On-Demand for JSON, a plain splitter for CSV.
#include "tributary/analytics/extract.h"

#include <simdjson.h>

#include <algorithm>
#include <fmt/format.h>

#include "tributary/core/error.h"

namespace tributary::analytics {

std::string_view to_string(Reject r) noexcept {
  switch (r) {
    case Reject::kNone: return "ok";
    case Reject::kNotJson: return "not a JSON object";
    case Reject::kMissingField: return "missing field";
    case Reject::kWrongType: return "field is an object or array";
    case Reject::kFieldCount: return "wrong number of fields";
  }
  return "?";
}

struct FieldExtractor::Impl {
  bool is_json = true;
  // JSON
  std::vector<std::string> pointers;
  simdjson::ondemand::parser parser;
  std::string padded;                 // event copy with simdjson's padding after it
  std::vector<std::string> strings;   // unescaped string fields (stable across at_pointer rewinds)
  // CSV
  std::size_t columns = 0;
  std::vector<std::size_t> wanted;  // column index of each field
  char separator = ',';
  std::vector<std::string_view> cells;
  std::vector<bool> optional;  // per field: may be absent
  bool is_optional(std::size_t i) const { return i < optional.size() && optional[i]; }

  Reject extract_json(std::string_view event, std::vector<std::string_view>& out, std::size_t* bad) {
    padded.assign(event);
    padded.resize(event.size() + simdjson::SIMDJSON_PADDING, '\0');
    simdjson::ondemand::document doc;
    if (parser.iterate(padded.data(), event.size(), padded.size()).get(doc) != simdjson::SUCCESS) {
      if (bad) *bad = pointers.size();
      return Reject::kNotJson;
    }
    simdjson::ondemand::json_type root_type;
    if (doc.type().get(root_type) != simdjson::SUCCESS || root_type != simdjson::ondemand::json_type::object) {
      if (bad) *bad = pointers.size();
      return Reject::kNotJson;
    }
    out.resize(pointers.size());
    for (std::size_t i = 0; i < pointers.size(); ++i) {
      simdjson::ondemand::value v;
      const auto err = doc.at_pointer(pointers[i]).get(v);
      if (err == simdjson::NO_SUCH_FIELD || err == simdjson::INVALID_JSON_POINTER || err == simdjson::INDEX_OUT_OF_BOUNDS) {
        if (is_optional(i)) {
          out[i] = std::string_view();
          continue;
        }
        if (bad) *bad = i;
        return Reject::kMissingField;
      }
      if (err != simdjson::SUCCESS) {
        if (bad) *bad = pointers.size();
        return Reject::kNotJson;
      }
      simdjson::ondemand::json_type t;
      if (v.type().get(t) != simdjson::SUCCESS) {
        if (bad) *bad = pointers.size();
        return Reject::kNotJson;
      }
      switch (t) {
        case simdjson::ondemand::json_type::string: {
          std::string_view s;
          if (v.get_string().get(s) != simdjson::SUCCESS) {
            if (bad) *bad = pointers.size();
            return Reject::kNotJson;
          }
          strings[i].assign(s);
          out[i] = strings[i];
          break;
        }
        case simdjson::ondemand::json_type::number:
        case simdjson::ondemand::json_type::boolean: {
          std::string_view raw = v.raw_json_token();
          while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\n' || raw.back() == '\t' || raw.back() == '\r'))
            raw.remove_suffix(1);
          out[i] = raw;  // points into the event copy, stable until the next call
          break;
        }
        case simdjson::ondemand::json_type::null:
          if (is_optional(i)) {
            out[i] = std::string_view();
            break;
          }
          if (bad) *bad = i;
          return Reject::kMissingField;
        default:
          if (bad) *bad = i;
          return Reject::kWrongType;
      }
    }
    // On-Demand validates what it reads (the fields and the way to them), not the rest.
    return Reject::kNone;
  }

  Reject extract_csv(std::string_view event, std::vector<std::string_view>& out, std::size_t* bad) {
    if (!event.empty() && event.back() == '\r') event.remove_suffix(1);
    cells.clear();
    std::size_t start = 0;
    for (;;) {
      const std::size_t end = event.find(separator, start);
      cells.push_back(event.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
      if (end == std::string_view::npos) break;
      start = end + 1;
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
void FieldExtractor::set_optional(std::vector<bool> optional) { impl_->optional = std::move(optional); }
FieldExtractor& FieldExtractor::operator=(FieldExtractor&&) noexcept = default;
FieldExtractor::~FieldExtractor() = default;

FieldExtractor FieldExtractor::json(std::vector<std::string> pointers) {
  auto impl = std::make_unique<Impl>();
  for (auto& p : pointers)
    if (p.empty() || p[0] != '/') p = "/" + p;  // "user_id" means "/user_id"
  impl->strings.resize(pointers.size());
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
  return impl_->is_json ? impl_->extract_json(event, out, bad_field) : impl_->extract_csv(event, out, bad_field);
}

}  // namespace tributary::analytics
