// A small Tianchi-shaped data set for tests (user_info + user_log rows), the analyzer config of
// the paper's experiment, and an independent recount of orders by age range, gender and day.
#pragma once

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "tianchi.h"

namespace tributary::testing {

struct TianchiRow {
  std::uint64_t user;
  std::uint64_t item;
  int time_stamp;  // mmdd as an integer
  int action;
};

struct TianchiData {
  std::map<std::uint64_t, std::pair<std::string, std::string>> info;  // user -> (age code, gender code)
  std::vector<TianchiRow> rows;

  static TianchiData make(std::uint64_t seed, int users, int rows) {
    TianchiData d;
    std::mt19937_64 rng(seed);
    for (int u = 1; u <= users; ++u) {
      if (u % 11 == 0) continue;  // not in user_info
      d.info[static_cast<std::uint64_t>(u)] = {u % 7 == 0 ? "" : std::to_string(rng() % 9),
                                               u % 13 == 0 ? "" : std::to_string(rng() % 3)};
    }
    for (int i = 0; i < rows; ++i)
      d.rows.push_back({1 + rng() % static_cast<std::uint64_t>(users + 20), rng() % 100000,
                        static_cast<int>((1 + rng() % 12) * 100 + 1 + rng() % 28), static_cast<int>(rng() % 4)});
    return d;
  }

  void write_info(const std::filesystem::path& p) const {
    std::ofstream f(p);
    f << "user_id,age_range,gender\n";
    for (const auto& [u, v] : info) f << u << "," << v.first << "," << v.second << "\n";
  }

  static std::string json(const TianchiRow& r) {
    return fmt::format(R"({{"user_id":{},"item_id":{},"cat_id":1,"seller_id":2,"brand_id":3,"time_stamp":{},"action_type":{}}})",
                       r.user, r.item, r.time_stamp, r.action);
  }

  // Expected CSV files, computed straight from the rows.
  std::map<std::string, std::string> expected_outputs() const {
    static const std::vector<std::string> ages = {"<18", "18-24", "25-29", "30-34", "35-39", "40-49", ">=50", "unknown"};
    static const std::vector<std::string> genders = {"female", "male", "unknown"};
    auto age_label = [](const std::string& c) -> std::string {
      static const std::map<std::string, std::string> m = {{"1", "<18"},   {"2", "18-24"}, {"3", "25-29"},
                                                           {"4", "30-34"}, {"5", "35-39"}, {"6", "40-49"},
                                                           {"7", ">=50"},  {"8", ">=50"}};
      const auto it = m.find(c);
      return it == m.end() ? "unknown" : it->second;
    };
    auto gender_label = [](const std::string& c) -> std::string {
      return c == "0" ? "female" : c == "1" ? "male" : "unknown";
    };
    std::map<std::string, std::uint64_t> by_age, by_gender;
    std::map<int, std::uint64_t> by_day;
    std::uint64_t total = 0;
    for (const auto& r : rows) {
      if (r.action != 2) continue;
      ++total;
      const auto it = info.find(r.user);
      ++by_age[it == info.end() ? "unknown" : age_label(it->second.first)];
      ++by_gender[it == info.end() ? "unknown" : gender_label(it->second.second)];
      ++by_day[r.time_stamp];
    }
    auto share = [&](std::uint64_t n) { return fmt::format("{:.4f}", total == 0 ? 0.0 : double(n) / double(total)); };
    std::string age = "age_range,orders,share\n", gender = "gender,orders,share\n", day = "day,orders\n";
    for (const auto& a : ages) age += fmt::format("{},{},{}\n", a, by_age[a], share(by_age[a]));
    for (const auto& g : genders) gender += fmt::format("{},{},{}\n", g, by_gender[g], share(by_gender[g]));
    for (const auto& [d, n] : by_day) day += fmt::format("{:04d},{}\n", d, n);
    return {{"orders_by_age.csv", age}, {"orders_by_gender.csv", gender}, {"orders_by_day.csv", day}};
  }
};

// The analyzer configuration of the paper's experiment (the one `tributary demo` uses).
inline void write_tianchi_analyze_config(const std::filesystem::path& file, const std::string& input,
                                         const std::filesystem::path& info, const std::filesystem::path& state,
                                         int checkpoint_ms = 200) {
  std::ofstream(file) << tools::tianchi_analyze_config(input, info, state, checkpoint_ms);
}

}  // namespace tributary::testing
