#include "services/access_policy.hpp"

#include <cctype>
#include <fstream>
#include <sstream>

#include <toml++/toml.h>

namespace cyto::services {

namespace {

bool is_word(std::string_view s) {
  if (s.empty())
    return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_')
      return false;
  return true;
}

/// "" if `id` is a SPIFFE ID or "…/*" prefix we accept, else the problem.
std::string check_id(std::string_view id) {
  constexpr std::string_view scheme = "spiffe://";
  if (id.substr(0, scheme.size()) != scheme)
    return "must start with spiffe://";
  auto rest = id.substr(scheme.size());
  if (rest.empty() || rest.front() == '/' || rest.front() == '*')
    return "needs a trust domain after spiffe://";
  auto star = id.find('*');
  if (star != std::string_view::npos && (star + 1 != id.size() || id[star - 1] != '/'))
    return "'*' may only end the ID, after a '/' (spiffe://td/user/*)";
  for (char c : id)
    if (std::isspace(static_cast<unsigned char>(c)) || std::iscntrl(static_cast<unsigned char>(c)))
      return "must not contain spaces or control characters";
  return {};
}

} // namespace

bool verb_matches(std::string_view pattern, std::string_view verb) {
  if (pattern == "*")
    return true;
  if (pattern.size() >= 2 && pattern.substr(pattern.size() - 2) == ".*") {
    auto service = pattern.substr(0, pattern.size() - 1); // keeps the '.'
    return verb.substr(0, service.size()) == service;
  }
  return pattern == verb;
}

bool access_policy::allows(std::string_view id, std::string_view verb) const {
  for (auto& e : entries_) {
    bool match = e.prefix ? id.substr(0, e.id.size()) == e.id && id.size() > e.id.size()
                          : id == e.id;
    if (!match)
      continue;
    for (auto& p : e.verbs)
      if (verb_matches(p, verb))
        return true;
  }
  return false;
}

std::optional<std::string>
access_policy::parse(std::string_view text, access_policy& out,
                     bool (*known_verb)(std::string_view, std::string_view)) {
  toml::table tbl;
  try {
    tbl = toml::parse(text);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << "line " << e.source().begin.line << ": " << e.description();
    return msg.str();
  }
  access_policy result;
  for (auto& [k, node] : tbl) {
    if (k.str() != "allow")
      return std::string{k.str()} + ": unknown key (expected [allow])";
    auto* allow = node.as_table();
    if (!allow)
      return "allow: expected a table of \"spiffe://...\" = [\"service.verb\", ...]";
    for (auto& [id_key, verbs_node] : *allow) {
      std::string id{id_key.str()};
      std::string where = "allow.\"" + id + "\"";
      if (auto bad = check_id(id); !bad.empty())
        return where + ": " + bad;
      entry e;
      e.prefix = id.back() == '*';
      e.id = e.prefix ? id.substr(0, id.size() - 1) : id;
      auto* arr = verbs_node.as_array();
      if (!arr)
        return where + ": expected an array of \"service.verb\" patterns";
      for (auto& v : *arr) {
        auto s = v.value<std::string>();
        if (!s)
          return where + ": expected an array of strings";
        if (*s != "*") {
          auto dot = s->find('.');
          std::string_view service =
            dot == std::string::npos ? std::string_view{} : std::string_view{*s}.substr(0, dot);
          std::string_view method =
            dot == std::string::npos ? std::string_view{} : std::string_view{*s}.substr(dot + 1);
          if (!is_word(service) || (method != "*" && !is_word(method)))
            return where + ": '" + *s + "' is not \"*\", \"service.*\" or \"service.verb\"";
          if (known_verb && !known_verb(service, method))
            return where + ": '" + *s + "' names no service or verb of cyto";
        }
        e.verbs.push_back(*s);
      }
      result.entries_.push_back(std::move(e));
    }
  }
  out = std::move(result);
  return std::nullopt;
}

std::optional<std::string>
access_policy::load(const std::string& path, access_policy& out,
                    bool (*known_verb)(std::string_view, std::string_view)) {
  std::ifstream in{path};
  if (!in)
    return path + ": cannot read the file";
  std::stringstream ss;
  ss << in.rdbuf();
  if (auto err = parse(ss.str(), out, known_verb))
    return path + ": " + *err;
  return std::nullopt;
}

} // namespace cyto::services
