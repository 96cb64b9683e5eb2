#include "actors/images/content_store.hpp"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "actors/images/reference.hpp"
#include "bus/errc.hpp"

namespace cyto::images {

namespace fs = std::filesystem;

namespace {

std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

/// A full disk (or quota, or no inodes left) is resource_exhausted, other failures of
/// the file system unavailable: a pull that does not fit says so.
errc errno_code() {
  return errno == ENOSPC || errno == EDQUOT ? errc::resource_exhausted : errc::unavailable;
}

std::string hex_of(const std::string& digest) {
  return digest.substr(7);
}

/// Writes go to the file in chunks of this size (fewer syscalls for small network reads).
constexpr size_t write_chunk = 1 << 20;

} // namespace

// -- sha256 -----------------------------------------------------------------------

sha256::sha256() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1)
    throw std::bad_alloc();
}

sha256::~sha256() {
  EVP_MD_CTX_free(ctx_);
}

void sha256::update(const void* data, size_t n) {
  EVP_DigestUpdate(ctx_, data, n);
}

std::string sha256::digest() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_, md, &len);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

std::string sha256::of(const void* data, size_t n) {
  sha256 h;
  h.update(data, n);
  return h.digest();
}

// -- store ------------------------------------------------------------------------

caf::expected<std::unique_ptr<content_store>> content_store::open(const std::string& root) {
  std::error_code ec;
  for (auto* sub : {"/blobs/sha256", "/ingest"}) {
    fs::create_directories(root + sub, ec);
    if (ec)
      return make_error(errc::unavailable, "create " + root + sub + ": " + ec.message());
  }
  // Half-written blobs of a previous run are never kept.
  for (auto& e : fs::directory_iterator{root + "/ingest", ec})
    fs::remove(e.path(), ec);
  return std::unique_ptr<content_store>{new content_store(root)};
}

std::string content_store::path(const std::string& digest) const {
  return root_ + "/blobs/sha256/" + hex_of(digest);
}

bool content_store::has(const std::string& digest) const {
  return is_sha256_digest(digest) && ::access(path(digest).c_str(), F_OK) == 0;
}

int64_t content_store::size(const std::string& digest) const {
  struct stat st{};
  if (!is_sha256_digest(digest) || ::stat(path(digest).c_str(), &st) != 0)
    return -1;
  return st.st_size;
}

caf::expected<std::string> content_store::read(const std::string& digest, size_t max) const {
  auto sz = size(digest);
  if (sz < 0)
    return make_error(errc::not_found, "blob " + digest + " is not in the store");
  if (static_cast<size_t>(sz) > max)
    return make_error(errc::invalid_argument,
                      "blob " + digest + " is " + std::to_string(sz) + " bytes, more than "
                        + std::to_string(max) + " expected");
  std::ifstream in{path(digest), std::ios::binary};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> content_store::list() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto& e : fs::directory_iterator{root_ + "/blobs/sha256", ec}) {
    auto d = "sha256:" + e.path().filename().string();
    if (is_sha256_digest(d))
      out.push_back(d);
  }
  return out;
}

uint64_t content_store::remove(const std::string& digest) {
  auto sz = size(digest);
  if (sz < 0 || ::unlink(path(digest).c_str()) != 0)
    return 0;
  return static_cast<uint64_t>(sz);
}

caf::expected<std::unique_ptr<content_store::writer>>
content_store::open_writer(const std::string& digest) const {
  if (!is_sha256_digest(digest))
    return make_error(errc::invalid_argument, "'" + digest + "' is not a sha256 digest");
  static std::atomic<uint64_t> counter{0};
  auto temp = root_ + "/ingest/" + hex_of(digest).substr(0, 16) + "-"
              + std::to_string(::getpid()) + "-" + std::to_string(++counter);
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    return make_error(errno_code(), errno_text("create " + temp));
  return std::unique_ptr<writer>{new writer(*this, digest, temp, fd)};
}

caf::expected<std::string> content_store::put(const std::string& data, const std::string& digest) {
  auto d = digest.empty() ? sha256::of(data) : digest;
  if (has(d)) {
    if (!digest.empty() && sha256::of(data) != d)
      return make_error(errc::invalid_argument, "digest mismatch: expected " + d);
    return d;
  }
  auto w = open_writer(d);
  if (!w)
    return w.error();
  if (auto err = (*w)->write(data.data(), data.size()))
    return err;
  if (auto err = (*w)->commit(static_cast<int64_t>(data.size())))
    return err;
  return d;
}

content_store::writer::writer(const content_store& store, std::string digest, std::string temp,
                              int fd)
  : store_(store), digest_(std::move(digest)), temp_(std::move(temp)), fd_(fd) {
  buf_.reserve(write_chunk);
}

content_store::writer::~writer() {
  if (fd_ >= 0)
    ::close(fd_);
  if (!temp_.empty())
    ::unlink(temp_.c_str());
}

namespace {

caf::error write_all(int fd, const char* p, size_t n, const std::string& path) {
  while (n > 0) {
    auto w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return make_error(errno_code(), errno_text("write " + path));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return {};
}

} // namespace

caf::error content_store::writer::write(const void* data, size_t n) {
  hash_.update(data, n);
  written_ += n;
  auto* p = static_cast<const char*>(data);
  if (buf_.size() + n < write_chunk) {
    buf_.insert(buf_.end(), p, p + n);
    return {};
  }
  if (auto err = write_all(fd_, buf_.data(), buf_.size(), temp_))
    return err;
  buf_.clear();
  return write_all(fd_, p, n, temp_);
}

caf::error content_store::writer::commit(int64_t size) {
  if (auto err = write_all(fd_, buf_.data(), buf_.size(), temp_))
    return err;
  buf_.clear();
  if (size >= 0 && written_ != static_cast<uint64_t>(size))
    return make_error(errc::invalid_argument,
                      "blob " + digest_ + ": size mismatch: expected " + std::to_string(size)
                        + " bytes, got " + std::to_string(written_));
  auto got = hash_.digest();
  if (got != digest_)
    return make_error(errc::invalid_argument,
                      "digest mismatch: expected " + digest_ + ", got " + got);
  if (::fdatasync(fd_) != 0)
    return make_error(errno_code(), errno_text("sync " + temp_));
  ::close(fd_);
  fd_ = -1;
  auto dest = store_.path(digest_);
  if (::rename(temp_.c_str(), dest.c_str()) != 0)
    return make_error(errno_code(), errno_text("rename " + temp_ + " to " + dest));
  temp_.clear();
  return {};
}

} // namespace cyto::images
