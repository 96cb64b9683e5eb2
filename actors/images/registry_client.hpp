#pragma once
// A client of the OCI distribution API on libcurl: manifests and blobs of one
// repository, with Bearer-token and basic auth, HTTPS (system CAs or a per-registry CA)
// or plain HTTP for registries configured as insecure. HTTP/2 where TLS offers it.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "actors/images/content_store.hpp"
#include "actors/images/manifest.hpp"
#include "actors/images/reference.hpp"

namespace cyto::images {

/// How to reach registries (from cytod's config).
struct registry_settings {
  /// Where short names ("busybox") resolve.
  std::string default_registry = "docker.io";
  /// Registries ("host:port") spoken to over plain HTTP.
  std::vector<std::string> insecure;
  /// Registry -> CA bundle (PEM) that signs its certificate.
  std::map<std::string, std::string> ca_files;
  /// A docker-style config.json: {"auths": {"host:port": {"auth": base64(user:pass)}}}.
  std::string credentials_file;
  /// Layers fetched and unpacked at once per pull.
  uint32_t parallel_layers = 4;

  bool is_insecure(const std::string& registry) const;
};

/// What a registry answered for a manifest.
struct fetched_manifest {
  std::string body;
  std::string content_type;
  /// sha256 of body (checked against the requested digest, if one was asked for).
  std::string digest;
};

/// Auth state shared by the clients of one pull (one per worker thread): a token
/// fetched once serves them all.
struct registry_auth {
  std::mutex mtx;
  std::string authorization; // guarded by mtx: the header value to send, if any
};

class registry_client {
public:
  /// Bytes so far, total.
  using progress_fn = std::function<void(uint64_t, uint64_t)>;

  registry_client(const registry_settings& settings, image_ref ref,
                  std::shared_ptr<registry_auth> auth, std::function<bool()> cancelled);
  ~registry_client();
  registry_client(const registry_client&) = delete;
  registry_client& operator=(const registry_client&) = delete;

  /// GETs a manifest by tag or digest; by digest the body must hash to it.
  caf::expected<fetched_manifest> get_manifest(const std::string& reference);

  /// Streams a blob into `w` (the writer checks digest and size on commit).
  caf::error fetch_blob(const descriptor& d, content_store::writer& w, const progress_fn& progress);

  /// The scheme and host this client talks to ("http://127.0.0.1:5000").
  const std::string& base_url() const noexcept {
    return base_;
  }

private:
  struct response {
    long status = 0;
    std::string content_type;
    std::string www_authenticate;
    std::string body;
  };
  using sink_fn = std::function<caf::error(const char*, size_t)>;

  caf::expected<response> get(const std::string& url, const char* accept, const sink_fn* sink,
                              const progress_fn* progress);
  caf::expected<response> perform(const std::string& url, const char* accept,
                                  const std::string& authorization, const sink_fn* sink,
                                  const progress_fn* progress);
  /// Answers a 401 challenge: fetches a token or picks basic credentials.
  caf::error authenticate(const std::string& challenge);
  caf::error status_error(const response& r, const std::string& what) const;

  const registry_settings& settings_;
  image_ref ref_;
  std::string base_;
  std::shared_ptr<registry_auth> auth_;
  std::function<bool()> cancelled_;
  void* curl_;
};

/// user:password for a registry from a docker-style config file, or empty.
std::string registry_credentials(const std::string& file, const std::string& registry);

} // namespace cyto::images
