// A unique temporary directory per test, removed afterwards (kept with TRIBUTARY_KEEP_TMP=1).
#pragma once

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace tributary::testing {

class TempDir {
 public:
  TempDir() : TempDir(std::getenv("TMPDIR") != nullptr ? std::getenv("TMPDIR") : "/tmp") {}
  // Under `base`: /dev/shm for tests that sync a lot and model the disk themselves.
  explicit TempDir(const std::filesystem::path& base) {
    std::string tmpl = (base / "tributary-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::system_error(errno, std::generic_category(), "mkdtemp");
    path_ = tmpl;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    if (std::getenv("TRIBUTARY_KEEP_TMP") != nullptr) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// The process's working directory is `p` for this object's life: for what resolves relative paths
// against it (tail patterns, LocalKafka's directory).
class InDirectory {
 public:
  explicit InDirectory(const std::filesystem::path& p) { std::filesystem::current_path(p); }
  InDirectory(const InDirectory&) = delete;
  InDirectory& operator=(const InDirectory&) = delete;
  ~InDirectory() {
    std::error_code ec;
    std::filesystem::current_path(old_, ec);
  }

 private:
  std::filesystem::path old_ = std::filesystem::current_path();
};

}  // namespace tributary::testing
