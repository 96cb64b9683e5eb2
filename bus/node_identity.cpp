#include "bus/node_identity.hpp"

#include <algorithm>
#include <cstdio>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

namespace cyto::bus {

namespace {

struct x509_free {
  void operator()(X509* p) const noexcept { X509_free(p); }
};
struct pkey_free {
  void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
struct store_free {
  void operator()(X509_STORE* p) const noexcept { X509_STORE_free(p); }
};
struct store_ctx_free {
  void operator()(X509_STORE_CTX* p) const noexcept { X509_STORE_CTX_free(p); }
};
struct md_ctx_free {
  void operator()(EVP_MD_CTX* p) const noexcept { EVP_MD_CTX_free(p); }
};
struct bio_free {
  void operator()(BIO* p) const noexcept { BIO_free(p); }
};
struct names_free {
  void operator()(GENERAL_NAMES* p) const noexcept { GENERAL_NAMES_free(p); }
};

using x509_ptr = std::unique_ptr<X509, x509_free>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free>;

/// The last OpenSSL error as text (and the queue cleared).
std::string ssl_error() {
  char buf[256] = "unknown error";
  if (auto e = ERR_get_error())
    ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

std::optional<std::string> read_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f)
    return std::nullopt;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0)
    out.append(buf, n);
  std::fclose(f);
  return out;
}

x509_ptr parse_cert(std::string_view pem) {
  std::unique_ptr<BIO, bio_free> bio{BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()))};
  if (!bio)
    return nullptr;
  return x509_ptr{PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)};
}

std::vector<std::string> spiffe_ids(X509* cert) {
  std::vector<std::string> out;
  std::unique_ptr<GENERAL_NAMES, names_free> names{static_cast<GENERAL_NAMES*>(
    X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr))};
  if (!names)
    return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    auto* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != GEN_URI)
      continue;
    auto* uri = name->d.uniformResourceIdentifier;
    std::string text{reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                     static_cast<size_t>(ASN1_STRING_length(uri))};
    if (text.rfind("spiffe://", 0) == 0)
      out.push_back(std::move(text));
  }
  return out;
}

/// EVP digest for signing with `key`: none for Ed25519/Ed448, SHA-256 otherwise.
const EVP_MD* digest_for(EVP_PKEY* key) {
  auto id = EVP_PKEY_get_base_id(key);
  return id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448 ? nullptr : EVP_sha256();
}

} // namespace

struct node_identity::impl {
  x509_ptr cert;
  pkey_ptr key;
  std::unique_ptr<X509_STORE, store_free> store;

  /// Whether `c` chains to the CA and is valid now; nothing if so, else why not.
  std::optional<std::string> check_chain(X509* c) const {
    std::unique_ptr<X509_STORE_CTX, store_ctx_free> ctx{X509_STORE_CTX_new()};
    if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), c, nullptr) != 1)
      return "cannot set up certificate verification: " + ssl_error();
    if (X509_verify_cert(ctx.get()) == 1)
      return std::nullopt;
    return std::string{"certificate not valid under our CA: "}
           + X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
  }
};

node_identity::node_identity(std::unique_ptr<impl> p) : impl_(std::move(p)) {
}

node_identity::~node_identity() = default;

std::unique_ptr<node_identity> node_identity::load(const std::string& cert_file,
                                                   const std::string& key_file,
                                                   const std::string& ca_file,
                                                   const std::string& node_name,
                                                   std::string& error) {
  auto p = std::make_unique<impl>();
  auto cert_pem = read_file(cert_file);
  if (!cert_pem) {
    error = "cannot read the node certificate " + cert_file;
    return nullptr;
  }
  p->cert = parse_cert(*cert_pem);
  if (!p->cert) {
    error = "no PEM certificate in " + cert_file + ": " + ssl_error();
    return nullptr;
  }
  auto key_pem = read_file(key_file);
  if (!key_pem) {
    error = "cannot read the node key " + key_file;
    return nullptr;
  }
  {
    std::unique_ptr<BIO, bio_free> bio{
      BIO_new_mem_buf(key_pem->data(), static_cast<int>(key_pem->size()))};
    p->key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  }
  if (!p->key) {
    error = "no PEM private key in " + key_file + ": " + ssl_error();
    return nullptr;
  }
  if (X509_check_private_key(p->cert.get(), p->key.get()) != 1) {
    error = "the key " + key_file + " does not belong to the certificate " + cert_file;
    ERR_clear_error();
    return nullptr;
  }
  p->store.reset(X509_STORE_new());
  if (!p->store || X509_STORE_load_file(p->store.get(), ca_file.c_str()) != 1) {
    error = "cannot load the CA " + ca_file + ": " + ssl_error();
    return nullptr;
  }
  if (auto bad = p->check_chain(p->cert.get())) {
    error = cert_file + ": " + *bad;
    return nullptr;
  }
  std::string td;
  for (auto& id : spiffe_ids(p->cert.get())) {
    auto rest = id.substr(9); // after spiffe://
    auto slash = rest.find('/');
    if (slash != std::string::npos && rest.substr(slash) == "/node/" + node_name)
      td = rest.substr(0, slash);
  }
  if (td.empty()) {
    error = cert_file + " is not the certificate of node " + node_name
            + " (no URI SAN spiffe://<trust domain>/node/" + node_name + ")";
    return nullptr;
  }
  std::unique_ptr<node_identity> out{new node_identity(std::move(p))};
  out->cert_pem_ = std::move(*cert_pem);
  out->trust_domain_ = std::move(td);
  return out;
}

std::string node_identity::node_spiffe_id(std::string_view name) const {
  return "spiffe://" + trust_domain_ + "/node/" + std::string{name};
}

std::string node_identity::sign(std::string_view data) const {
  std::unique_ptr<EVP_MD_CTX, md_ctx_free> ctx{EVP_MD_CTX_new()};
  size_t len = 0;
  if (!ctx
      || EVP_DigestSignInit(ctx.get(), nullptr, digest_for(impl_->key.get()), nullptr,
                            impl_->key.get())
           != 1
      || EVP_DigestSign(ctx.get(), nullptr, &len,
                        reinterpret_cast<const unsigned char*>(data.data()), data.size())
           != 1)
    return {};
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(data.data()), data.size())
      != 1)
    return {};
  sig.resize(len);
  return sig;
}

std::optional<std::string> node_identity::verify(std::string_view cert_pem, std::string_view name,
                                                 std::string_view data,
                                                 std::string_view signature) const {
  auto cert = parse_cert(cert_pem);
  if (!cert) {
    ERR_clear_error();
    return std::string{"no PEM certificate in its proof"};
  }
  if (auto bad = impl_->check_chain(cert.get()))
    return bad;
  auto want = node_spiffe_id(name);
  auto ids = spiffe_ids(cert.get());
  if (std::find(ids.begin(), ids.end(), want) == ids.end()) {
    std::string got;
    for (auto& id : ids)
      got += (got.empty() ? "" : ", ") + id;
    return "its certificate is not " + want + " (it says " + (got.empty() ? "nothing" : got)
           + ")";
  }
  pkey_ptr pub{X509_get_pubkey(cert.get())};
  std::unique_ptr<EVP_MD_CTX, md_ctx_free> ctx{EVP_MD_CTX_new()};
  if (!pub || !ctx
      || EVP_DigestVerifyInit(ctx.get(), nullptr, digest_for(pub.get()), nullptr, pub.get()) != 1
      || EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                          signature.size(), reinterpret_cast<const unsigned char*>(data.data()),
                          data.size())
           != 1) {
    ERR_clear_error();
    return std::string{"its signature of our challenge does not verify with its certificate"};
  }
  return std::nullopt;
}

std::string node_identity::proof_text(std::string_view challenge, std::string_view signer,
                                      std::string_view verifier) {
  std::string out = "cyto-federation-v1\n";
  out.append(challenge).append("\n").append(signer).append("\n").append(verifier);
  return out;
}

std::string node_identity::fresh_challenge() {
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof(raw)) != 1)
    return {};
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (auto b : raw) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

std::vector<std::string> spiffe_ids_of(std::string_view cert_pem) {
  auto cert = parse_cert(cert_pem);
  if (!cert) {
    ERR_clear_error();
    return {};
  }
  return spiffe_ids(cert.get());
}

} // namespace cyto::bus
