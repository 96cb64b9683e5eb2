#pragma once
// Who may call what over the TCP gateway: SPIFFE IDs (exact, or a prefix ending in "/*")
// mapped to `service.verb` patterns ("containers.run", "containers.*", "*").
//
//   [allow]
//   "spiffe://cyto.local/user/admin" = ["*"]
//   "spiffe://cyto.local/user/ci" = ["containers.run", "containers.list", "discovery.*"]
//   "spiffe://cyto.local/node/*" = ["discovery.*"]
//
// An identity gets the union of every entry that matches it; no entry means no call.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cyto::services {

class access_policy {
public:
  struct entry {
    std::string id;     ///< an exact SPIFFE ID, or a prefix (without its trailing '*')
    bool prefix = false;
    std::vector<std::string> verbs; ///< "*", "service.*" or "service.verb"
  };

  /// Whether `id` may call `verb` ("service.method").
  bool allows(std::string_view id, std::string_view verb) const;

  const std::vector<entry>& entries() const noexcept {
    return entries_;
  }

  /// Parses the TOML text; on error returns "<where>: <problem>" and leaves `out` alone.
  /// `known_verb` (optional) rejects patterns naming no real service or method.
  static std::optional<std::string>
  parse(std::string_view text, access_policy& out,
        bool (*known_verb)(std::string_view service, std::string_view method) = nullptr);

  /// Reads and parses a file; errors start with the path.
  static std::optional<std::string>
  load(const std::string& path, access_policy& out,
       bool (*known_verb)(std::string_view service, std::string_view method) = nullptr);

private:
  std::vector<entry> entries_;
};

/// Whether a `service.verb` pattern matches `verb`.
bool verb_matches(std::string_view pattern, std::string_view verb);

} // namespace cyto::services
