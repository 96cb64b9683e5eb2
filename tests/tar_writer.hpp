#pragma once
// A minimal ustar writer for hand-made (hostile) layers, shared by the unit and the
// integration tests of images.

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

namespace cyto::test {

inline std::string octal(uint64_t v, size_t width) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%0*llo", static_cast<int>(width - 1),
                static_cast<unsigned long long>(v));
  return std::string{buf, width - 1} + '\0';
}

inline std::string tar_entry(const std::string& name, char type, const std::string& link = "",
                             const std::string& data = "", unsigned mode = 0644) {
  std::string h(512, '\0');
  auto put = [&](size_t off, const std::string& s) { std::memcpy(&h[off], s.data(), s.size()); };
  put(0, name.substr(0, 99));
  put(100, octal(mode, 8));
  put(108, octal(0, 8));
  put(116, octal(0, 8));
  put(124, octal(data.size(), 12));
  put(136, octal(1700000000, 12));
  put(148, std::string(8, ' '));
  h[156] = type;
  put(157, link.substr(0, 99));
  put(257, std::string{"ustar\0", 6});
  put(263, "00");
  unsigned sum = 0;
  for (unsigned char c : h)
    sum += c;
  put(148, octal(sum, 7) + " ");
  std::string out = h + data;
  out.resize((out.size() + 511) / 512 * 512, '\0');
  return out;
}

inline std::string tar_end() {
  return std::string(1024, '\0');
}

/// A pax extended header carrying `key=value` for the entry after it.
inline std::string pax_entry(const std::string& key, const std::string& value) {
  auto body = " " + key + "=" + value + "\n";
  auto len = body.size() + 1;
  while (std::to_string(len).size() + body.size() != len)
    ++len;
  return tar_entry("PaxHeader", 'x', "", std::to_string(len) + body);
}

/// A tar entry with owner, mode and device numbers.
inline std::string tar_node(const std::string& name, char type, unsigned mode, unsigned uid,
                            unsigned gid, unsigned major = 0, unsigned minor = 0) {
  auto e = tar_entry(name, type, "", "", mode);
  auto put = [&](size_t off, const std::string& v) { std::memcpy(&e[off], v.data(), v.size()); };
  put(108, octal(uid, 8));
  put(116, octal(gid, 8));
  put(329, octal(major, 8));
  put(337, octal(minor, 8));
  put(148, std::string(8, ' '));
  unsigned sum = 0;
  for (size_t i = 0; i < 512; ++i)
    sum += static_cast<unsigned char>(e[i]);
  put(148, octal(sum, 7) + " ");
  return e;
}

} // namespace cyto::test
