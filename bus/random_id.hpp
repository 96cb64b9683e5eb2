#pragma once
// Random ids of the daemon's records (containers, generated volume names).

#include <fstream>
#include <string>

namespace cyto {

/// 64 hex digits from /dev/urandom (podman's form of container ids and volume names).
inline std::string random_id() {
  unsigned char buf[32] = {};
  std::ifstream in{"/dev/urandom", std::ios::binary};
  in.read(reinterpret_cast<char*>(buf), sizeof(buf));
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (auto b : buf) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

} // namespace cyto
