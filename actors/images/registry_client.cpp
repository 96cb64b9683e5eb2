#include "actors/images/registry_client.hpp"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include <curl/curl.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include "bus/errc.hpp"

namespace cyto::images {

namespace {

/// Error bodies and token answers are small; a registry that sends more is cut off.
constexpr size_t max_small_body = 4 << 20;

struct call_state {
  CURL* curl = nullptr;
  const std::function<caf::error(const char*, size_t)>* sink = nullptr;
  const std::function<void(uint64_t, uint64_t)>* progress = nullptr;
  const std::function<bool()>* cancelled = nullptr;
  std::string* body = nullptr;
  std::string* content_type = nullptr;
  std::string* www_authenticate = nullptr;
  caf::error sink_error;
  bool too_big = false;
};

bool ok_status(long s) {
  return s >= 200 && s < 300;
}

size_t on_write(char* data, size_t size, size_t n, void* user) {
  auto& st = *static_cast<call_state*>(user);
  size_t len = size * n;
  long status = 0;
  curl_easy_getinfo(st.curl, CURLINFO_RESPONSE_CODE, &status);
  if (st.sink && ok_status(status)) {
    if (auto err = (*st.sink)(data, len)) {
      st.sink_error = std::move(err);
      return 0;
    }
    return len;
  }
  if (st.body->size() + len > max_small_body) {
    st.too_big = true;
    return 0;
  }
  st.body->append(data, len);
  return len;
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
    s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i])))
    ++i;
  return s.substr(i);
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto& st = *static_cast<call_state*>(user);
  std::string line{data, size * n};
  auto colon = line.find(':');
  if (line.rfind("HTTP/", 0) == 0) {
    // a new response (after a redirect or 100): forget the previous one's headers
    st.content_type->clear();
    st.www_authenticate->clear();
  } else if (colon != std::string::npos) {
    auto key = line.substr(0, colon);
    std::transform(key.begin(), key.end(), key.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (key == "content-type")
      *st.content_type = trim(line.substr(colon + 1));
    else if (key == "www-authenticate")
      *st.www_authenticate = trim(line.substr(colon + 1));
  }
  return size * n;
}

int on_progress(void* user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t, curl_off_t) {
  auto& st = *static_cast<call_state*>(user);
  if (st.cancelled && *st.cancelled && (*st.cancelled)())
    return 1;
  if (st.progress && dlnow > 0)
    (*st.progress)(static_cast<uint64_t>(dlnow), static_cast<uint64_t>(dltotal));
  return 0;
}

/// Parses `Bearer realm="...",service="...",scope="..."` into its parameters.
std::map<std::string, std::string> challenge_params(const std::string& text, std::string& scheme) {
  std::map<std::string, std::string> out;
  auto sp = text.find(' ');
  scheme = text.substr(0, sp);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (sp == std::string::npos)
    return out;
  size_t i = sp + 1;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == ','))
      ++i;
    auto eq = text.find('=', i);
    if (eq == std::string::npos)
      break;
    auto key = text.substr(i, eq - i);
    std::string value;
    i = eq + 1;
    if (i < text.size() && text[i] == '"') {
      ++i;
      while (i < text.size() && text[i] != '"') {
        if (text[i] == '\\' && i + 1 < text.size())
          ++i;
        value += text[i++];
      }
      ++i;
    } else {
      while (i < text.size() && text[i] != ',')
        value += text[i++];
    }
    std::transform(key.begin(), key.end(), key.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    out[trim(key)] = value;
  }
  return out;
}

std::string base64(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  auto n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                           reinterpret_cast<const unsigned char*>(in.data()),
                           static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string unbase64(const std::string& in) {
  std::string out(3 * (in.size() / 4) + 3, '\0');
  auto n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                           reinterpret_cast<const unsigned char*>(in.data()),
                           static_cast<int>(in.size()));
  if (n < 0)
    return {};
  out.resize(static_cast<size_t>(n));
  // EVP_DecodeBlock counts the padding as zero bytes
  size_t pad = 0;
  for (auto it = in.rbegin(); it != in.rend() && *it == '='; ++it)
    ++pad;
  out.resize(out.size() - std::min(pad, out.size()));
  return out;
}

std::string url_escape(CURL* curl, const std::string& s) {
  char* e = curl_easy_escape(curl, s.c_str(), static_cast<int>(s.size()));
  std::string out = e ? e : "";
  curl_free(e);
  return out;
}

struct curl_global {
  curl_global() {
    curl_global_init(CURL_GLOBAL_DEFAULT);
  }
};

} // namespace

bool registry_settings::is_insecure(const std::string& registry) const {
  return std::find(insecure.begin(), insecure.end(), registry) != insecure.end();
}

std::string registry_credentials(const std::string& file, const std::string& registry) {
  if (file.empty())
    return {};
  std::ifstream in{file};
  if (!in)
    return {};
  try {
    auto j = nlohmann::json::parse(in);
    if (!j.contains("auths") || !j["auths"].contains(registry))
      return {};
    auto& a = j["auths"][registry];
    if (a.contains("auth") && a["auth"].is_string())
      return unbase64(a["auth"].get<std::string>());
    if (a.contains("username") && a.contains("password"))
      return a["username"].get<std::string>() + ":" + a["password"].get<std::string>();
  } catch (const nlohmann::json::exception&) {
  }
  return {};
}

registry_client::registry_client(const registry_settings& settings, image_ref ref,
                                 std::shared_ptr<registry_auth> auth,
                                 std::function<bool()> cancelled)
  : settings_(settings), ref_(std::move(ref)), auth_(std::move(auth)), cancelled_(std::move(cancelled)) {
  static curl_global global;
  base_ = (settings_.is_insecure(ref_.registry) ? "http://" : "https://")
          + registry_host(ref_.registry);
  curl_ = curl_easy_init();
}

registry_client::~registry_client() {
  curl_easy_cleanup(static_cast<CURL*>(curl_));
}

caf::expected<registry_client::response>
registry_client::perform(const std::string& url, const char* accept,
                         const std::string& authorization, const sink_fn* sink,
                         const progress_fn* progress) {
  auto* curl = static_cast<CURL*>(curl_);
  if (!curl)
    return make_error(errc::resource_exhausted, "curl_easy_init failed");
  curl_easy_reset(curl);
  response r;
  call_state st;
  st.curl = curl;
  st.sink = sink;
  st.progress = progress;
  st.cancelled = &cancelled_;
  st.body = &r.body;
  st.content_type = &r.content_type;
  st.www_authenticate = &r.www_authenticate;
  char errbuf[CURL_ERROR_SIZE] = {};
  curl_slist* headers = nullptr;
  if (accept)
    headers = curl_slist_append(headers, (std::string{"Accept: "} + accept).c_str());
  if (!authorization.empty())
    headers = curl_slist_append(headers, ("Authorization: " + authorization).c_str());
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR,
                   settings_.is_insecure(ref_.registry) ? "http,https" : "https");
  curl_easy_setopt(curl, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 15L);
  // A transfer that stalls (under 1 byte/s for 60 s) fails instead of hanging the pull.
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "cyto/0.1");
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &st);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &st);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &st);
  curl_easy_setopt(curl, CURLOPT_BUFFERSIZE, 512L * 1024);
  if (auto ca = settings_.ca_files.find(ref_.registry); ca != settings_.ca_files.end())
    curl_easy_setopt(curl, CURLOPT_CAINFO, ca->second.c_str());
  auto rc = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
  if (rc == CURLE_OK)
    return r;
  if (st.sink_error)
    return std::move(st.sink_error);
  if (rc == CURLE_ABORTED_BY_CALLBACK)
    return make_error(errc::cancelled, "GET " + url + ": cancelled");
  if (st.too_big)
    return make_error(errc::invalid_argument,
                      "GET " + url + ": answer larger than " + std::to_string(max_small_body));
  std::string why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
  if (rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING
      || rc == CURLE_HTTP2_STREAM || rc == CURLE_HTTP2)
    return make_error(errc::unavailable, "GET " + url + ": connection cut short: " + why);
  return make_error(errc::unavailable, "GET " + url + ": " + why);
}

caf::error registry_client::authenticate(const std::string& challenge) {
  std::string scheme;
  auto params = challenge_params(challenge, scheme);
  auto creds = registry_credentials(settings_.credentials_file, ref_.registry);
  if (scheme == "basic") {
    if (creds.empty())
      return make_error(errc::permission_denied,
                        "registry " + ref_.registry + " wants basic auth and no credentials for it "
                          "are configured");
    std::lock_guard<std::mutex> guard{auth_->mtx};
    auth_->authorization = "Basic " + base64(creds);
    return {};
  }
  if (scheme != "bearer" || params["realm"].empty())
    return make_error(errc::permission_denied,
                      "registry " + ref_.registry + ": unsupported auth challenge '" + challenge + "'");
  auto* curl = static_cast<CURL*>(curl_);
  auto realm = params["realm"];
  if (realm.rfind("https://", 0) != 0
      && !(realm.rfind("http://", 0) == 0 && settings_.is_insecure(ref_.registry)))
    return make_error(errc::permission_denied,
                      "registry " + ref_.registry + ": token realm " + realm
                        + " is not https (and the registry is not configured as insecure)");
  std::string url = realm + (realm.find('?') == std::string::npos ? "?" : "&");
  if (!params["service"].empty())
    url += "service=" + url_escape(curl, params["service"]) + "&";
  url += "scope=" + url_escape(curl, params.count("scope") ? params["scope"]
                                                           : "repository:" + ref_.repository
                                                               + ":pull");
  auto r = perform(url, "application/json", creds.empty() ? "" : "Basic " + base64(creds),
                   nullptr, nullptr);
  if (!r)
    return r.error();
  if (r->status == 401 || r->status == 403)
    return make_error(errc::permission_denied,
                      "registry " + ref_.registry + ": token service refused"
                        + (creds.empty() ? " anonymous access" : " the configured credentials"));
  if (!ok_status(r->status))
    return status_error(*r, "token from " + realm);
  try {
    auto j = nlohmann::json::parse(r->body);
    std::string token = j.value("token", "");
    if (token.empty())
      token = j.value("access_token", "");
    if (token.empty())
      return make_error(errc::permission_denied,
                        "registry " + ref_.registry + ": token service answered no token");
    std::lock_guard<std::mutex> guard{auth_->mtx};
    auth_->authorization = "Bearer " + token;
  } catch (const nlohmann::json::exception& e) {
    return make_error(errc::unavailable,
                      "registry " + ref_.registry + ": token answer is not JSON: " + e.what());
  }
  return {};
}

caf::error registry_client::status_error(const response& r, const std::string& what) const {
  std::string detail;
  try {
    auto j = nlohmann::json::parse(r.body);
    if (j.contains("errors") && j["errors"].is_array() && !j["errors"].empty())
      detail = j["errors"][0].value("code", "") + " " + j["errors"][0].value("message", "");
  } catch (const nlohmann::json::exception&) {
  }
  auto text = what + ": HTTP " + std::to_string(r.status) + (detail.empty() ? "" : " " + detail);
  if (r.status == 404)
    return make_error(errc::not_found, text);
  if (r.status == 401 || r.status == 403)
    return make_error(errc::permission_denied, text);
  if (r.status == 429 || r.status >= 500)
    return make_error(errc::unavailable, text);
  return make_error(errc::invalid_argument, text);
}

caf::expected<registry_client::response>
registry_client::get(const std::string& url, const char* accept, const sink_fn* sink,
                     const progress_fn* progress) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::string authz;
    {
      std::lock_guard<std::mutex> guard{auth_->mtx};
      authz = auth_->authorization;
    }
    auto r = perform(url, accept, authz, sink, progress);
    if (!r)
      return r;
    if (r->status != 401 || attempt == 1 || r->www_authenticate.empty())
      return r;
    if (auto err = authenticate(r->www_authenticate))
      return err;
  }
  return make_error(errc::internal, "unreachable");
}

caf::expected<fetched_manifest> registry_client::get_manifest(const std::string& reference) {
  auto url = base_ + "/v2/" + ref_.repository + "/manifests/" + reference;
  auto r = get(url, media_type::accept_manifests, nullptr, nullptr);
  if (!r)
    return r.error();
  if (!ok_status(r->status))
    return status_error(*r, "manifest " + ref_.repo_name() + ":" + reference);
  fetched_manifest m;
  m.body = std::move(r->body);
  m.content_type = r->content_type.substr(0, r->content_type.find(';'));
  m.digest = sha256::of(m.body);
  if (is_sha256_digest(reference) && m.digest != reference)
    return make_error(errc::invalid_argument, "manifest " + ref_.repo_name() + "@" + reference
                                                + ": digest mismatch: got " + m.digest);
  return m;
}

caf::error registry_client::fetch_blob(const descriptor& d, content_store::writer& w,
                                       const progress_fn& progress) {
  auto url = base_ + "/v2/" + ref_.repository + "/blobs/" + d.digest;
  sink_fn sink = [&w](const char* p, size_t n) { return w.write(p, n); };
  auto r = get(url, nullptr, &sink, &progress);
  if (!r)
    return r.error();
  if (!ok_status(r->status))
    return status_error(*r, "blob " + d.digest + " of " + ref_.repo_name());
  return w.commit(d.size);
}

} // namespace cyto::images
