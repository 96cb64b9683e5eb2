// Layer blobs (tar, gzip or zstd) unpacked as the images actor does, with its escape
// checks: whatever the entries say (absolute names, "..", symlinks and hard links out,
// whiteouts, devices), nothing is ever written outside the destination directory.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include "actors/images/unpack.hpp"

namespace fs = std::filesystem;

namespace {

/// <tmp>/cyto-tar-fuzz-PID/{blob,out/dest}: `out` must hold only `dest` afterwards.
struct dirs {
  fs::path root = fs::temp_directory_path() / ("cyto-tar-fuzz-" + std::to_string(::getpid()));
  fs::path blob = root / "blob";
  fs::path out = root / "out";
  fs::path dest = out / "dest";
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static dirs d;
  std::error_code ec;
  fs::remove_all(d.root, ec);
  fs::create_directories(d.dest);
  {
    std::ofstream f{d.blob, std::ios::binary};
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  cyto::images::unpack_stats stats;
  cyto::images::unpack_layer(d.blob.string(), d.dest.string(), stats);
  size_t beside = 0;
  for (auto& e : fs::directory_iterator{d.out})
    if (e.path() != d.dest)
      ++beside;
  size_t at_root = 0;
  for (auto& e : fs::directory_iterator{d.root})
    if (e.path() != d.blob && e.path() != d.out)
      ++at_root;
  if (beside != 0 || at_root != 0) {
    std::fprintf(stderr, "unpack wrote outside its destination\n");
    std::abort();
  }
  fs::remove_all(d.root, ec);
  return 0;
}
