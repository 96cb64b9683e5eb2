#pragma once
// The content-addressed blob store: <root>/blobs/sha256/<hex>. Every blob arrives
// through a writer that streams into <root>/ingest/, hashes while writing, and only
// on commit (size and digest match) is renamed into place; a writer dropped without
// commit deletes its temp file. So a blob in the store is always complete and correct.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

struct evp_md_ctx_st;

namespace cyto::images {

/// Incremental sha256 (OpenSSL EVP).
class sha256 {
public:
  sha256();
  ~sha256();
  sha256(const sha256&) = delete;
  sha256& operator=(const sha256&) = delete;
  void update(const void* data, size_t n);
  /// "sha256:<hex>"; the hasher is spent afterwards.
  std::string digest();
  /// "sha256:<hex>" of a whole buffer.
  static std::string of(const void* data, size_t n);
  static std::string of(const std::string& s) {
    return of(s.data(), s.size());
  }

private:
  evp_md_ctx_st* ctx_;
};

class content_store {
public:
  /// `root` is <state>/images; made if missing. Leftover ingest files are removed.
  static caf::expected<std::unique_ptr<content_store>> open(const std::string& root);

  /// <root>/blobs/sha256/<hex> (whether or not it exists).
  std::string path(const std::string& digest) const;
  bool has(const std::string& digest) const;
  /// Size of a stored blob, or -1.
  int64_t size(const std::string& digest) const;
  /// Reads a stored blob of at most `max` bytes.
  caf::expected<std::string> read(const std::string& digest, size_t max = 16 << 20) const;
  /// Every stored digest.
  std::vector<std::string> list() const;
  /// Deletes a blob; returns the bytes freed.
  uint64_t remove(const std::string& digest);

  /// Streams one blob in.
  class writer {
  public:
    ~writer();
    writer(const writer&) = delete;
    writer& operator=(const writer&) = delete;
    caf::error write(const void* data, size_t n);
    uint64_t written() const noexcept {
      return written_;
    }
    /// Checks size (if `size` >= 0) and digest, syncs and renames into place. On any
    /// mismatch the temp file is gone and nothing is stored.
    caf::error commit(int64_t size = -1);

  private:
    friend class content_store;
    writer(const content_store& store, std::string digest, std::string temp, int fd);
    const content_store& store_;
    std::string digest_;
    std::string temp_;
    int fd_;
    uint64_t written_ = 0;
    sha256 hash_;
    std::vector<char> buf_;
  };

  /// A writer for blob `digest` (which must be a sha256 digest).
  caf::expected<std::unique_ptr<writer>> open_writer(const std::string& digest) const;

  /// Stores a buffer whose digest is computed (or checked if `digest` is given).
  caf::expected<std::string> put(const std::string& data, const std::string& digest = {});

  const std::string& root() const noexcept {
    return root_;
  }

private:
  explicit content_store(std::string root) : root_(std::move(root)) {
  }
  std::string root_;
};

} // namespace cyto::images
