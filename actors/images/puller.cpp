#include "actors/images/puller.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include "bus/errc.hpp"

namespace cyto::images {

namespace {

using progress_fn = registry_client::progress_fn;
using clock = std::chrono::steady_clock;

/// Fetches blobs for one thread of a job.
struct blob_fetcher {
  virtual ~blob_fetcher() = default;
  /// Streams blob `d` into the store (writer committed on success).
  virtual caf::error fetch(const descriptor& d, content_store::writer& w,
                           const progress_fn& progress) = 0;
  /// Puts manifest `d` into the store. Registries serve manifests on their own endpoint;
  /// layouts keep them with the other blobs.
  virtual caf::error fetch_manifest(const descriptor& d, content_store& store) {
    auto w = store.open_writer(d.digest);
    if (!w)
      return w.error();
    return fetch(d, **w, [](uint64_t, uint64_t) {});
  }
};

/// Where a job's blobs come from; makes one fetcher per worker thread.
struct blob_source {
  virtual ~blob_source() = default;
  virtual std::unique_ptr<blob_fetcher> make(std::function<bool()> cancelled) = 0;
};

struct registry_fetcher final : blob_fetcher {
  registry_fetcher(const registry_settings& s, const image_ref& ref,
                   std::shared_ptr<registry_auth> auth, std::function<bool()> cancelled)
    : client(s, ref, std::move(auth), std::move(cancelled)) {
  }
  caf::error fetch(const descriptor& d, content_store::writer& w,
                   const progress_fn& progress) override {
    return client.fetch_blob(d, w, progress);
  }
  caf::error fetch_manifest(const descriptor& d, content_store& store) override {
    auto m = client.get_manifest(d.digest);
    if (!m)
      return m.error();
    auto stored = store.put(m->body, d.digest);
    return stored ? caf::error{} : stored.error();
  }
  registry_client client;
};

struct registry_source final : blob_source {
  registry_source(const registry_settings& s, image_ref r)
    : settings(s), ref(std::move(r)), auth(std::make_shared<registry_auth>()) {
  }
  std::unique_ptr<blob_fetcher> make(std::function<bool()> cancelled) override {
    return std::make_unique<registry_fetcher>(settings, ref, auth, std::move(cancelled));
  }
  const registry_settings& settings;
  image_ref ref;
  std::shared_ptr<registry_auth> auth;
};

/// Blobs of an OCI layout directory.
struct layout_fetcher final : blob_fetcher {
  explicit layout_fetcher(std::string d) : dir(std::move(d)) {
  }
  caf::error fetch(const descriptor& d, content_store::writer& w,
                   const progress_fn& progress) override {
    auto path = dir + "/blobs/sha256/" + d.digest.substr(7);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
      return make_error(errno == ENOENT ? errc::not_found : errc::unavailable,
                        "blob " + d.digest + " of layout " + dir + ": " + std::strerror(errno));
    std::vector<char> buf(1 << 20);
    uint64_t total = 0;
    while (true) {
      auto n = ::read(fd, buf.data(), buf.size());
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0) {
        ::close(fd);
        if (n < 0)
          return make_error(errc::unavailable, "read " + path + ": " + std::strerror(errno));
        break;
      }
      if (auto err = w.write(buf.data(), static_cast<size_t>(n))) {
        ::close(fd);
        return err;
      }
      total += static_cast<uint64_t>(n);
      progress(total, static_cast<uint64_t>(d.size));
    }
    return w.commit(d.size);
  }
  std::string dir;
};

struct layout_source final : blob_source {
  explicit layout_source(std::string d) : dir(std::move(d)) {
  }
  std::unique_ptr<blob_fetcher> make(std::function<bool()>) override {
    return std::make_unique<layout_fetcher>(dir);
  }
  std::string dir;
};

/// An oci-archive's blobs were all ingested while reading it: anything else is missing.
struct archive_fetcher final : blob_fetcher {
  caf::error fetch(const descriptor& d, content_store::writer&, const progress_fn&) override {
    return make_error(errc::not_found, "blob " + d.digest + " is not in the archive");
  }
};

struct archive_source final : blob_source {
  std::unique_ptr<blob_fetcher> make(std::function<bool()>) override {
    return std::make_unique<archive_fetcher>();
  }
};

/// Serializes and thins out progress: a blob's bytes at most every 100 ms.
class reporter {
public:
  reporter(job_context& ctx, std::string ref) : ctx_(ctx), ref_(std::move(ref)) {
  }
  void operator()(const std::string& digest, pull_phase phase, uint64_t current, uint64_t total) {
    std::lock_guard<std::mutex> guard{mtx_};
    auto now = clock::now();
    auto& last = last_[digest];
    if (phase == pull_phase::downloading && last.first == phase && now - last.second < interval
        && current < total)
      return;
    last = {phase, now};
    if (ctx_.report)
      ctx_.report(image_progress{0, ref_, digest, phase, current, total});
  }

private:
  static constexpr auto interval = std::chrono::milliseconds(100);
  job_context& ctx_;
  std::string ref_;
  std::mutex mtx_;
  std::map<std::string, std::pair<pull_phase, clock::time_point>> last_;
};

caf::error ensure_blob(job_context& ctx, blob_fetcher& f, const descriptor& d, reporter* rep) {
  if (ctx.store.has(d.digest)) {
    if (rep)
      (*rep)(d.digest, pull_phase::exists, static_cast<uint64_t>(d.size),
             static_cast<uint64_t>(d.size));
    return {};
  }
  auto w = ctx.store.open_writer(d.digest);
  if (!w)
    return w.error();
  progress_fn progress = [&](uint64_t now, uint64_t total) {
    if (rep)
      (*rep)(d.digest, pull_phase::downloading, now, total ? total : static_cast<uint64_t>(d.size));
  };
  if (rep)
    (*rep)(d.digest, pull_phase::downloading, 0, static_cast<uint64_t>(d.size));
  return f.fetch(d, **w, progress);
}

caf::expected<std::string> manifest_body(job_context& ctx, blob_fetcher& f, const descriptor& d) {
  if (!ctx.store.has(d.digest))
    if (auto err = f.fetch_manifest(d, ctx.store))
      return err;
  return ctx.store.read(d.digest);
}

/// Fetches and unpacks the layers of `m` (bounded parallelism) and describes the image.
caf::expected<image_info> finish_image(job_context& ctx, blob_source& source, blob_fetcher& f,
                                       const manifest& m, const std::string& manifest_digest,
                                       image_info info, reporter& rep) {
  if (auto err = ensure_blob(ctx, f, m.config, nullptr))
    return err;
  auto cfg_body = ctx.store.read(m.config.digest);
  if (!cfg_body)
    return cfg_body.error();
  auto cfg = parse_config(*cfg_body);
  if (!cfg)
    return cfg.error();
  if (cfg->diff_ids.size() != m.layers.size())
    return make_error(errc::invalid_argument,
                      "image config lists " + std::to_string(cfg->diff_ids.size())
                        + " diff ids for " + std::to_string(m.layers.size()) + " layers");
  auto chains = chain_ids(cfg->diff_ids);
  for (auto& l : m.layers)
    rep(l.digest, pull_phase::waiting, 0, static_cast<uint64_t>(l.size));

  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex err_mtx;
  caf::error first_error;
  auto stop = [&] { return failed.load() || (ctx.cancelled && ctx.cancelled()); };
  auto work = [&] {
    auto fetcher = source.make(stop);
    for (size_t i; (i = next.fetch_add(1)) < m.layers.size() && !stop();) {
      auto& l = m.layers[i];
      caf::error err = ensure_blob(ctx, *fetcher, l, &rep);
      if (!err && !ctx.snapshots.has(chains[i])) {
        rep(l.digest, pull_phase::extracting, static_cast<uint64_t>(l.size),
            static_cast<uint64_t>(l.size));
        unpack_stats stats;
        err = ctx.snapshots.create(chains[i], ctx.store.path(l.digest), cfg->diff_ids[i], stats,
                                   stop);
      }
      if (err) {
        std::lock_guard<std::mutex> guard{err_mtx};
        if (!first_error)
          first_error = make_error(static_cast<errc>(err.code()),
                                   "layer " + l.digest + ": " + context_of(err));
        failed = true;
        return;
      }
      rep(l.digest, pull_phase::done, static_cast<uint64_t>(l.size),
          static_cast<uint64_t>(l.size));
    }
  };
  auto n = std::min<size_t>(std::max<uint32_t>(ctx.settings.parallel_layers, 1), m.layers.size());
  std::vector<std::thread> threads;
  for (size_t i = 1; i < n; ++i)
    threads.emplace_back(work);
  if (n > 0)
    work();
  for (auto& t : threads)
    t.join();
  if (first_error)
    return first_error;
  if (ctx.cancelled && ctx.cancelled())
    return make_error(errc::cancelled, "the daemon is shutting down");

  info.manifest_digest = manifest_digest;
  info.config_digest = m.config.digest;
  info.os = cfg->os;
  info.architecture = cfg->architecture;
  info.variant = cfg->variant;
  info.created = cfg->created;
  info.config_json = std::move(*cfg_body);
  info.size = static_cast<uint64_t>(m.config.size);
  for (size_t i = 0; i < m.layers.size(); ++i) {
    auto& l = m.layers[i];
    info.layers.push_back({l.digest, l.media_type, static_cast<uint64_t>(l.size), cfg->diff_ids[i],
                           chains[i]});
    info.size += static_cast<uint64_t>(l.size);
  }
  info.pulled_unix_nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  return info;
}

/// From a top-level manifest or index already in the store to a complete image.
caf::expected<image_info> resolve(job_context& ctx, blob_source& source, blob_fetcher& f,
                                  const std::string& name, const descriptor& top,
                                  const platform& want) {
  auto body = manifest_body(ctx, f, top);
  if (!body)
    return body.error();
  auto m = parse_manifest(*body, top.media_type);
  if (!m)
    return m.error();
  image_info info;
  info.name = name;
  info.digest = top.digest;
  info.media_type = m->media_type;
  std::string manifest_digest = top.digest;
  // An index may point at another index (rare, allowed): follow up to a few levels.
  for (int depth = 0; m->is_index; ++depth) {
    if (depth == 4)
      return make_error(errc::invalid_argument, "indexes nested deeper than 4 levels");
    auto child = pick_platform(*m, want);
    if (!child)
      return child.error();
    auto child_body = manifest_body(ctx, f, *child);
    if (!child_body)
      return child_body.error();
    auto cm = parse_manifest(*child_body, child->media_type);
    if (!cm)
      return cm.error();
    manifest_digest = child->digest;
    m = std::move(cm);
  }
  reporter rep{ctx, name};
  return finish_image(ctx, source, f, *m, manifest_digest, std::move(info), rep);
}

std::string sanitize_repo(std::string s) {
  std::string out;
  for (char c : s) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
      out += c;
    else if (!out.empty() && out.back() != '-')
      out += '-';
  }
  while (!out.empty() && out.back() == '-')
    out.pop_back();
  return out.empty() ? "image" : out;
}

/// Reads an oci-archive: blobs go straight into the store (each verified), index.json
/// into `index`.
caf::error ingest_archive(job_context& ctx, const std::string& path, std::string& index) {
  std::unique_ptr<archive, decltype(&archive_read_free)> a{archive_read_new(), archive_read_free};
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  archive_read_support_format_gnutar(a.get());
  if (archive_read_open_filename(a.get(), path.c_str(), 1 << 20) != ARCHIVE_OK)
    return make_error(errc::invalid_argument,
                      "import " + path + ": " + archive_error_string(a.get()));
  archive_entry* e;
  int r;
  std::vector<char> buf(1 << 20);
  while ((r = archive_read_next_header(a.get(), &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
    std::string name = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
    while (name.rfind("./", 0) == 0)
      name = name.substr(2);
    if (archive_entry_filetype(e) != AE_IFREG)
      continue;
    if (name == "index.json") {
      if (archive_entry_size(e) > (16 << 20))
        return make_error(errc::invalid_argument, "import " + path + ": index.json too large");
      index.resize(static_cast<size_t>(archive_entry_size(e)));
      if (archive_read_data(a.get(), index.data(), index.size())
          != static_cast<la_ssize_t>(index.size()))
        return make_error(errc::invalid_argument, "import " + path + ": index.json truncated");
      continue;
    }
    if (name.rfind("blobs/sha256/", 0) != 0)
      continue;
    auto digest = "sha256:" + name.substr(13);
    if (!is_sha256_digest(digest))
      return make_error(errc::invalid_argument, "import " + path + ": odd blob name " + name);
    if (ctx.store.has(digest))
      continue;
    auto w = ctx.store.open_writer(digest);
    if (!w)
      return w.error();
    la_ssize_t n;
    while ((n = archive_read_data(a.get(), buf.data(), buf.size())) > 0)
      if (auto err = (*w)->write(buf.data(), static_cast<size_t>(n)))
        return err;
    if (n < 0)
      return make_error(errc::invalid_argument,
                        "import " + path + ": " + name + ": " + archive_error_string(a.get()));
    if (auto err = (*w)->commit(archive_entry_size(e)))
      return make_error(errc::invalid_argument,
                        "import " + path + ": " + name + ": " + context_of(err));
  }
  if (r != ARCHIVE_EOF)
    return make_error(errc::invalid_argument,
                      "import " + path + ": " + (archive_error_string(a.get())
                                                   ? archive_error_string(a.get())
                                                   : "broken archive"));
  if (index.empty())
    return make_error(errc::invalid_argument,
                      "import " + path + ": no index.json (not an oci-archive)");
  return {};
}

} // namespace

caf::expected<image_info> pull_image(job_context& ctx, const image_ref& ref, const platform& want) {
  registry_source source{ctx.settings, ref};
  auto f = source.make(ctx.cancelled);
  descriptor top;
  if (!ref.digest.empty() && ctx.store.has(ref.digest)) {
    top.digest = ref.digest; // known content: no need to ask the registry
  } else {
    auto& client = static_cast<registry_fetcher&>(*f).client;
    auto got = client.get_manifest(ref.reference());
    if (!got)
      return got.error();
    auto stored = ctx.store.put(got->body, got->digest);
    if (!stored)
      return stored.error();
    top.digest = got->digest;
    top.media_type = got->content_type;
    top.size = static_cast<int64_t>(got->body.size());
  }
  return resolve(ctx, source, *f, ref.name(), top, want);
}

caf::expected<std::vector<image_info>> import_images(job_context& ctx, const std::string& path,
                                                     const std::string& name,
                                                     const platform& want) {
  struct stat st{};
  if (path.empty() || path.front() != '/')
    return make_error(errc::invalid_argument, "import: path must be absolute, got '" + path + "'");
  if (::stat(path.c_str(), &st) != 0)
    return make_error(errc::not_found, "import " + path + ": " + std::strerror(errno));
  std::string index_text;
  std::unique_ptr<blob_source> source;
  if (S_ISDIR(st.st_mode)) {
    if (::access((path + "/oci-layout").c_str(), F_OK) != 0)
      return make_error(errc::invalid_argument,
                        "import " + path + ": no oci-layout file (not an OCI layout directory)");
    std::ifstream in{path + "/index.json"};
    std::stringstream ss;
    ss << in.rdbuf();
    index_text = ss.str();
    source = std::make_unique<layout_source>(path);
  } else {
    if (auto err = ingest_archive(ctx, path, index_text))
      return err;
    source = std::make_unique<archive_source>();
  }
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(index_text);
  } catch (const nlohmann::json::exception& e) {
    return make_error(errc::invalid_argument, "import " + path + ": index.json: " + e.what());
  }
  if (!index.contains("manifests") || !index["manifests"].is_array()
      || index["manifests"].empty())
    return make_error(errc::invalid_argument, "import " + path + ": index.json lists no images");
  if (!name.empty() && index["manifests"].size() != 1)
    return make_error(errc::invalid_argument,
                      "import " + path + ": a name was given but the layout holds "
                        + std::to_string(index["manifests"].size()) + " images");
  std::string fallback_repo = "localhost/"
                              + sanitize_repo(path.substr(path.rfind('/') + 1));
  auto f = source->make(ctx.cancelled);
  std::vector<image_info> out;
  size_t n = 0;
  for (auto& entry : index["manifests"]) {
    ++n;
    descriptor d;
    d.media_type = entry.value("mediaType", "");
    d.digest = entry.value("digest", "");
    d.size = entry.value("size", int64_t{0});
    if (!is_sha256_digest(d.digest))
      return make_error(errc::invalid_argument,
                        "import " + path + ": index entry digest '" + d.digest + "' is not sha256");
    std::string tag;
    if (entry.contains("annotations") && entry["annotations"].is_object())
      tag = entry["annotations"].value("org.opencontainers.image.ref.name", "");
    std::string text = !name.empty() ? name
                       : tag.find_first_of("/@") != std::string::npos
                         ? tag
                         : fallback_repo + ":" + (tag.empty() ? "import-" + std::to_string(n) : tag);
    auto ref = parse_reference(text, ctx.settings.default_registry);
    if (!ref)
      return ref.error();
    auto img = resolve(ctx, *source, *f, ref->name(), d, want);
    if (!img)
      return img.error();
    out.push_back(std::move(*img));
  }
  return out;
}

} // namespace cyto::images
