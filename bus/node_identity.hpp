#pragma once
// A node's identity for federation, checked at the application level: CAF's TLS layer
// accepts any certificate our CA signed and never shows it, and a CAF node id is
// self-asserted. So a joining node sends its certificate and signs a fresh challenge
// with its node key; the other side checks the certificate against the CA, that its
// SPIFFE URI SAN is spiffe://<trust domain>/node/<claimed name>, and the signature.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cyto::bus {

class node_identity {
public:
  /// Loads this node's certificate and key and the CA (PEM files). Fails (with a reason
  /// naming the file) if one cannot be read, the key does not match the certificate, the
  /// certificate is not valid under the CA, or its SPIFFE ID is not
  /// spiffe://<td>/node/<node_name> for some trust domain td.
  static std::unique_ptr<node_identity> load(const std::string& cert_file,
                                             const std::string& key_file,
                                             const std::string& ca_file,
                                             const std::string& node_name, std::string& error);
  ~node_identity();
  node_identity(const node_identity&) = delete;
  node_identity& operator=(const node_identity&) = delete;

  const std::string& cert_pem() const noexcept {
    return cert_pem_;
  }
  /// The trust domain of our own certificate ("cyto.local").
  const std::string& trust_domain() const noexcept {
    return trust_domain_;
  }
  /// The SPIFFE ID a node called `name` must have in our trust domain.
  std::string node_spiffe_id(std::string_view name) const;

  /// Signs `data` with the node key (DER signature over SHA-256).
  std::string sign(std::string_view data) const;

  /// Checks that `cert_pem` is valid under our CA now, that its SPIFFE URI SAN is the
  /// node `name` of our trust domain, and that `signature` over `data` was made with its
  /// key. Returns nothing if so, else why not.
  std::optional<std::string> verify(std::string_view cert_pem, std::string_view name,
                                    std::string_view data, std::string_view signature) const;

  /// What a node signs to answer `challenge` given by node `verifier` (binds the
  /// signature to both names, so it cannot be replayed elsewhere).
  static std::string proof_text(std::string_view challenge, std::string_view signer,
                                std::string_view verifier);

  /// A fresh random challenge (32 random bytes, hex).
  static std::string fresh_challenge();

private:
  struct impl;
  explicit node_identity(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
  std::string cert_pem_;
  std::string trust_domain_;
};

/// The URI SANs of a PEM certificate that start with "spiffe://" (empty on parse errors).
std::vector<std::string> spiffe_ids_of(std::string_view cert_pem);

} // namespace cyto::bus
