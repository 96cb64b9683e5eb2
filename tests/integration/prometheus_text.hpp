#pragma once
// A strict reader of the Prometheus text exposition format (0.0.4), for tests: every
// line must be a HELP, TYPE, other comment, blank, or sample line; names and labels must
// be well formed and values floats; a family's TYPE comes before its samples, once.

#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace cyto::test {

struct prom_sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct prom_text {
  std::vector<prom_sample> samples;
  std::map<std::string, std::string> types; ///< family -> counter|gauge|...
  std::map<std::string, std::string> help;

  /// The value of the one sample of `name` whose labels include `want`.
  std::optional<double> find(const std::string& name,
                             const std::map<std::string, std::string>& want = {}) const {
    for (auto& s : samples) {
      if (s.name != name)
        continue;
      bool ok = true;
      for (auto& [k, v] : want)
        if (auto i = s.labels.find(k); i == s.labels.end() || i->second != v)
          ok = false;
      if (ok)
        return s.value;
    }
    return std::nullopt;
  }
};

inline double parse_prom_value(const std::string& v) {
  if (v == "+Inf" || v == "Inf")
    return INFINITY;
  if (v == "-Inf")
    return -INFINITY;
  if (v == "NaN")
    return NAN;
  static const std::regex num{R"([-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?)"};
  if (!std::regex_match(v, num))
    throw std::runtime_error("not a float: '" + v + "'");
  return std::strtod(v.c_str(), nullptr);
}

/// Parses `text`; throws std::runtime_error naming the line on any violation.
inline prom_text parse_prometheus_text(const std::string& text) {
  static const std::regex name_re{R"([a-zA-Z_:][a-zA-Z0-9_:]*)"};
  static const std::regex help_re{R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*))"};
  static const std::regex type_re{
      R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped))"};
  // name, optional {labels}, value, optional timestamp
  static const std::regex sample_re{R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ([^ ]+)( -?[0-9]+)?)"};
  static const std::regex label_re{R"(([a-zA-Z_][a-zA-Z0-9_]*)="((\\.|[^"\\])*)\"(,|$))"};
  prom_text out;
  std::set<std::string> seen_samples_of; // families whose samples started
  std::string current;                   // the family being written
  size_t n = 0;
  size_t pos = 0;
  if (!text.empty() && text.back() != '\n')
    throw std::runtime_error("the text does not end with a newline");
  while (pos < text.size()) {
    auto eol = text.find('\n', pos);
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++n;
    auto where = "line " + std::to_string(n) + " '" + line + "': ";
    std::smatch m;
    if (line.empty())
      continue;
    if (line.rfind("# HELP ", 0) == 0) {
      if (!std::regex_match(line, m, help_re))
        throw std::runtime_error(where + "malformed HELP");
      if (!out.help.emplace(m[1], m[2]).second)
        throw std::runtime_error(where + "second HELP for the family");
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      if (!std::regex_match(line, m, type_re))
        throw std::runtime_error(where + "malformed TYPE");
      if (seen_samples_of.count(m[1]))
        throw std::runtime_error(where + "TYPE after the family's samples");
      if (!out.types.emplace(m[1], m[2]).second)
        throw std::runtime_error(where + "second TYPE for the family");
      current = m[1];
      continue;
    }
    if (line[0] == '#')
      continue; // a comment
    if (!std::regex_match(line, m, sample_re))
      throw std::runtime_error(where + "not a sample line");
    prom_sample s;
    s.name = m[1];
    if (m[2].matched) {
      std::string labels = m[3];
      auto it = labels.cbegin();
      std::smatch lm;
      while (it != labels.cend()) {
        if (!std::regex_search(it, labels.cend(), lm, label_re,
                               std::regex_constants::match_continuous))
          throw std::runtime_error(where + "malformed labels");
        std::string v = lm[2], unescaped;
        for (size_t i = 0; i < v.size(); ++i) {
          if (v[i] == '\\' && i + 1 < v.size()) {
            char c = v[++i];
            if (c != '\\' && c != '"' && c != 'n')
              throw std::runtime_error(where + "bad escape in a label value");
            unescaped += c == 'n' ? '\n' : c;
          } else {
            unescaped += v[i];
          }
        }
        if (!s.labels.emplace(lm[1], unescaped).second)
          throw std::runtime_error(where + "label repeated");
        it = lm[0].second;
      }
    }
    try {
      s.value = parse_prom_value(m[4]);
    } catch (const std::exception& e) {
      throw std::runtime_error(where + e.what());
    }
    // A sample belongs to the family declared last (histograms add suffixes; we use none).
    if (s.name != current)
      throw std::runtime_error(where + "sample outside its family's block (TYPE " + current + ")");
    seen_samples_of.insert(s.name);
    out.samples.push_back(std::move(s));
  }
  for (auto& [family, type] : out.types) {
    bool total = family.size() > 6 && family.compare(family.size() - 6, 6, "_total") == 0;
    if ((type == "counter") != total)
      throw std::runtime_error("family " + family + ": counters, and only counters, end in _total");
    if (!out.help.count(family))
      throw std::runtime_error("family " + family + " has no HELP");
  }
  return out;
}

} // namespace cyto::test
