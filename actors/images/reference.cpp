#include "actors/images/reference.hpp"

#include <cctype>

#include "bus/errc.hpp"

namespace cyto::images {

namespace {

bool lower_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/// One path component: lowercase alphanumerics joined by '.', '_', "__" or runs of '-'.
bool valid_component(std::string_view c) {
  if (c.empty() || !lower_alnum(c.front()) || !lower_alnum(c.back()))
    return false;
  for (size_t i = 0; i < c.size(); ++i) {
    char x = c[i];
    if (lower_alnum(x) || x == '-')
      continue;
    if (x == '.' || x == '_') {
      // a separator must sit between alphanumerics ("__" counts as one)
      bool double_us = x == '_' && i + 1 < c.size() && c[i + 1] == '_';
      size_t next = i + (double_us ? 2 : 1);
      if (next >= c.size() || !lower_alnum(c[next]) || !lower_alnum(c[i - 1]))
        return false;
      i = next - 1;
      continue;
    }
    return false;
  }
  return true;
}

bool valid_tag(std::string_view t) {
  if (t.empty() || t.size() > 128)
    return false;
  auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  if (!word(t.front()))
    return false;
  for (char c : t)
    if (!word(c) && c != '.' && c != '-')
      return false;
  return true;
}

bool valid_registry(std::string_view r) {
  if (r.empty() || r.size() > 255)
    return false;
  for (char c : r)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != ':'
        && c != '[' && c != ']')
      return false;
  return true;
}

caf::error bad(std::string_view text, const std::string& why) {
  return make_error(errc::invalid_argument,
                    "image reference '" + std::string{text} + "': " + why);
}

} // namespace

bool is_sha256_digest(std::string_view text) {
  if (text.size() != 71 || text.substr(0, 7) != "sha256:")
    return false;
  for (char c : text.substr(7))
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  return true;
}

std::string image_ref::repo_name() const {
  return registry + "/" + repository;
}

std::string image_ref::name() const {
  if (!tag.empty())
    return repo_name() + ":" + tag;
  return repo_name() + "@" + digest;
}

std::string image_ref::reference() const {
  return digest.empty() ? tag : digest;
}

std::string registry_host(const std::string& registry) {
  return registry == "docker.io" ? "registry-1.docker.io" : registry;
}

caf::expected<image_ref> parse_reference(std::string_view text, std::string_view default_registry) {
  if (text.empty())
    return bad(text, "empty");
  if (text.size() > 512)
    return bad(text, "longer than 512 characters");
  for (char c : text)
    if (std::isspace(static_cast<unsigned char>(c)) || std::iscntrl(static_cast<unsigned char>(c)))
      return bad(text, "contains white space or control characters");
  image_ref r;
  std::string_view rest = text;
  if (auto at = rest.find('@'); at != std::string_view::npos) {
    r.digest = std::string{rest.substr(at + 1)};
    rest = rest.substr(0, at);
    if (!is_sha256_digest(r.digest))
      return bad(text, "digest '" + r.digest + "' is not sha256: and 64 lowercase hex digits");
  }
  // A tag follows the last ':' after the last '/' (a ':' before it is a registry port).
  auto slash = rest.rfind('/');
  auto colon = rest.rfind(':');
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
    r.tag = std::string{rest.substr(colon + 1)};
    rest = rest.substr(0, colon);
    if (!valid_tag(r.tag))
      return bad(text, "tag '" + r.tag + "' is not 1-128 of [A-Za-z0-9_.-] starting with a "
                                         "letter, digit or '_'");
  }
  auto first_slash = rest.find('/');
  std::string_view first = rest.substr(0, first_slash);
  bool has_registry = first_slash != std::string_view::npos
                      && (first.find('.') != std::string_view::npos
                          || first.find(':') != std::string_view::npos || first == "localhost");
  std::string_view path = rest;
  if (has_registry) {
    r.registry = std::string{first};
    path = rest.substr(first_slash + 1);
    if (!valid_registry(r.registry))
      return bad(text, "registry '" + r.registry + "' is not a host[:port]");
  } else {
    r.registry = std::string{default_registry};
  }
  if (path.empty())
    return bad(text, "no repository name");
  size_t start = 0;
  while (true) {
    auto end = path.find('/', start);
    auto comp = path.substr(start, end == std::string_view::npos ? end : end - start);
    if (!valid_component(comp))
      return bad(text, "repository component '" + std::string{comp}
                         + "' must be lowercase letters and digits, separated by '.', '_', "
                           "'__' or '-'");
    if (end == std::string_view::npos)
      break;
    start = end + 1;
  }
  r.repository = std::string{path};
  if (!has_registry && r.registry == "docker.io" && r.repository.find('/') == std::string::npos)
    r.repository = "library/" + r.repository;
  if (r.repository.size() > 255)
    return bad(text, "repository name longer than 255 characters");
  if (r.tag.empty() && r.digest.empty())
    r.tag = "latest";
  return r;
}

} // namespace cyto::images
