#include "actors/images/manifest.hpp"

#include <nlohmann/json.hpp>

#include "actors/images/content_store.hpp"
#include "actors/images/reference.hpp"
#include "bus/errc.hpp"

namespace cyto::images {

using nlohmann::json;

namespace {

caf::error malformed(const std::string& what) {
  return make_error(errc::invalid_argument, "malformed " + what);
}

caf::expected<descriptor> descriptor_of(const json& j, const std::string& where) {
  if (!j.is_object())
    return malformed(where + ": not an object");
  descriptor d;
  d.media_type = j.value("mediaType", "");
  d.digest = j.value("digest", "");
  if (!j.contains("size") || !j["size"].is_number_integer() || j["size"].get<int64_t>() < 0)
    return malformed(where + ": size missing or negative");
  d.size = j["size"].get<int64_t>();
  if (!is_sha256_digest(d.digest))
    return make_error(errc::unsupported,
                      where + ": digest '" + d.digest + "' is not a sha256 digest");
  if (j.contains("platform") && j["platform"].is_object()) {
    auto& p = j["platform"];
    d.for_platform = platform{p.value("os", ""), p.value("architecture", ""), p.value("variant", "")};
  }
  return d;
}

} // namespace

std::optional<compression> layer_compression(const std::string& mt) {
  if (mt == "application/vnd.oci.image.layer.v1.tar"
      || mt == "application/vnd.docker.image.rootfs.diff.tar")
    return compression::none;
  if (mt == "application/vnd.oci.image.layer.v1.tar+gzip"
      || mt == "application/vnd.docker.image.rootfs.diff.tar.gzip")
    return compression::gzip;
  if (mt == "application/vnd.oci.image.layer.v1.tar+zstd")
    return compression::zstd;
  return std::nullopt;
}

std::string platform::str() const {
  return os + "/" + architecture + (variant.empty() ? "" : "/" + variant);
}

caf::expected<platform> parse_platform(const std::string& text) {
  if (text.empty())
    return platform{"linux", "amd64", ""};
  platform p;
  auto a = text.find('/');
  if (a == std::string::npos || a == 0)
    return make_error(errc::invalid_argument,
                      "platform '" + text + "': expected os/architecture[/variant]");
  p.os = text.substr(0, a);
  auto b = text.find('/', a + 1);
  p.architecture = text.substr(a + 1, b == std::string::npos ? b : b - a - 1);
  if (b != std::string::npos)
    p.variant = text.substr(b + 1);
  for (auto* s : {&p.os, &p.architecture, &p.variant})
    for (char c : *s)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-')
        return make_error(errc::invalid_argument,
                          "platform '" + text + "': expected os/architecture[/variant]");
  if (p.architecture.empty())
    return make_error(errc::invalid_argument,
                      "platform '" + text + "': expected os/architecture[/variant]");
  return p;
}

namespace {

caf::expected<manifest> parse_manifest_unchecked(const std::string& body, const std::string& declared) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    return malformed(std::string{"manifest: "} + e.what());
  }
  if (!j.is_object())
    return malformed("manifest: not a JSON object");
  manifest m;
  m.media_type = j.value("mediaType", "");
  if (m.media_type.empty()) {
    // OCI allows omitting mediaType; the declared type or the shape tells.
    if (!declared.empty() && declared != "application/json" && declared != "text/plain")
      m.media_type = declared;
    else
      m.media_type = j.contains("manifests") ? media_type::oci_index : media_type::oci_manifest;
  }
  // Found by fuzzing: value<int>() of 7.7e32 is a float-to-int overflow (undefined).
  auto sv = j.find("schemaVersion");
  bool schema1 = sv != j.end() && sv->is_number_integer() && sv->get<int64_t>() == 1;
  if (schema1 || m.media_type.find("distribution.manifest.v1") != std::string::npos)
    return make_error(errc::unsupported,
                      "media type " + (m.media_type.empty() ? std::string{"schema 1"} : m.media_type)
                        + ": Docker schema 1 manifests are not supported");
  if (m.media_type == media_type::oci_index || m.media_type == media_type::docker_list) {
    m.is_index = true;
    if (!j.contains("manifests") || !j["manifests"].is_array())
      return malformed("index: no manifests array");
    for (auto& d : j["manifests"]) {
      auto desc = descriptor_of(d, "index entry");
      if (!desc)
        return desc.error();
      m.manifests.push_back(std::move(*desc));
    }
    return m;
  }
  if (m.media_type != media_type::oci_manifest && m.media_type != media_type::docker_manifest)
    return make_error(errc::unsupported, "unsupported manifest media type " + m.media_type);
  if (!j.contains("config"))
    return malformed("manifest: no config");
  auto cfg = descriptor_of(j["config"], "manifest config");
  if (!cfg)
    return cfg.error();
  m.config = std::move(*cfg);
  if (m.config.media_type != media_type::oci_config
      && m.config.media_type != media_type::docker_config)
    return make_error(errc::unsupported,
                      "unsupported config media type " + m.config.media_type
                        + " (not a container image)");
  if (!j.contains("layers") || !j["layers"].is_array())
    return malformed("manifest: no layers array");
  for (auto& l : j["layers"]) {
    auto d = descriptor_of(l, "layer");
    if (!d)
      return d.error();
    if (!layer_compression(d->media_type))
      return make_error(errc::unsupported,
                        "unsupported layer media type " + d->media_type + " (layer " + d->digest
                          + ")");
    m.layers.push_back(std::move(*d));
  }
  return m;
}

} // namespace

// Found by fuzzing (tests/fuzz/manifest_fuzz.cpp): a member of the wrong type ("mediaType":
// 5) made nlohmann's value() throw out of the parser, on a pull worker thread: cytod died.
// Every JSON error is "malformed" now.
caf::expected<manifest> parse_manifest(const std::string& body, const std::string& declared) {
  try {
    return parse_manifest_unchecked(body, declared);
  } catch (const json::exception& e) {
    return malformed(std::string{"manifest: "} + e.what());
  }
}

caf::expected<descriptor> pick_platform(const manifest& index, const platform& want) {
  std::vector<std::string> seen;
  for (auto& d : index.manifests) {
    if (!d.for_platform)
      continue;
    auto& p = *d.for_platform;
    seen.push_back(p.str());
    if (p.os == want.os && p.architecture == want.architecture
        && (want.variant.empty() || p.variant == want.variant))
      return d;
  }
  std::string list;
  for (auto& s : seen)
    list += (list.empty() ? "" : ", ") + s;
  return make_error(errc::not_found, "no manifest for platform " + want.str() + " in the index"
                                       + (list.empty() ? "" : " (it has " + list + ")"));
}

namespace {

caf::expected<image_config> parse_config_unchecked(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    return malformed(std::string{"image config: "} + e.what());
  }
  if (!j.is_object())
    return malformed("image config: not an object");
  image_config c;
  c.os = j.value("os", "");
  c.architecture = j.value("architecture", "");
  c.variant = j.value("variant", "");
  c.created = j.contains("created") && j["created"].is_string() ? j["created"].get<std::string>()
                                                                  : "";
  if (!j.contains("rootfs") || !j["rootfs"].is_object() || !j["rootfs"].contains("diff_ids")
      || !j["rootfs"]["diff_ids"].is_array())
    return malformed("image config: no rootfs.diff_ids");
  for (auto& d : j["rootfs"]["diff_ids"]) {
    if (!d.is_string() || !is_sha256_digest(d.get<std::string>()))
      return malformed("image config: a diff_id is not a sha256 digest");
    c.diff_ids.push_back(d.get<std::string>());
  }
  return c;
}

} // namespace

// Found by fuzzing (tests/fuzz/manifest_fuzz.cpp): a member of the wrong type ("mediaType":
// 5) made nlohmann's value() throw out of the parser, on a pull worker thread: cytod died.
// Every JSON error is "malformed" now.
caf::expected<image_config> parse_config(const std::string& body) {
  try {
    return parse_config_unchecked(body);
  } catch (const json::exception& e) {
    return malformed(std::string{"image config: "} + e.what());
  }
}

std::vector<std::string> chain_ids(const std::vector<std::string>& diff_ids) {
  std::vector<std::string> out;
  for (auto& d : diff_ids)
    out.push_back(out.empty() ? d : sha256::of(out.back() + " " + d));
  return out;
}

} // namespace cyto::images
