#pragma once
// The frames a client of a container's attach socket sends its shim (the wire format
// between the gateway's relay and `cyto-runtime shim`; see actors/containers/attach.hpp):
// 1 type byte, 4 bytes length (little endian), payload.

#include <cstdint>
#include <cstring>
#include <string>

namespace cyto {

/// 'i' input bytes, 'e' end of input, 'w' window size (rows, cols: u16 little endian).
inline std::string attach_frame(char type, const void* data, uint32_t size) {
  std::string out(5 + size, '\0');
  out[0] = type;
  for (int i = 0; i < 4; ++i)
    out[1 + i] = static_cast<char>((size >> (8 * i)) & 0xff);
  if (size > 0)
    std::memcpy(out.data() + 5, data, size);
  return out;
}

/// The 'w' frame for a terminal of `rows` x `cols`.
inline std::string attach_resize_frame(uint16_t rows, uint16_t cols) {
  unsigned char b[4] = {static_cast<unsigned char>(rows & 0xff), static_cast<unsigned char>(rows >> 8),
                        static_cast<unsigned char>(cols & 0xff), static_cast<unsigned char>(cols >> 8)};
  return attach_frame('w', b, 4);
}

} // namespace cyto
