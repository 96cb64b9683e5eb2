#pragma once
// Small capnp <-> std conversions the services share.

#include <string>
#include <vector>

#include <capnp/list.h>

namespace cyto::services {

inline std::vector<std::string> texts(capnp::List<capnp::Text>::Reader xs) {
  std::vector<std::string> out;
  out.reserve(xs.size());
  for (auto x : xs)
    out.emplace_back(x.cStr());
  return out;
}

inline void fill_texts(capnp::List<capnp::Text>::Builder out, const std::vector<std::string>& in) {
  for (uint i = 0; i < in.size(); ++i)
    out.set(i, in[i]);
}

} // namespace cyto::services
