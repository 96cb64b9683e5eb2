#include "services/authorizer.hpp"

#include <map>
#include <utility>
#include <vector>

#include <capnp/membrane.h>
#include <capnp/schema.h>
#include <kj/refcount.h>

#include "bus/logging.hpp"
#include "schema/cells.capnp.h"
#include "schema/containers.capnp.h"
#include "schema/discovery.capnp.h"
#include "schema/images.capnp.h"
#include "schema/network.capnp.h"
#include "schema/node.capnp.h"
#include "schema/observe.capnp.h"
#include "schema/vms.capnp.h"
#include "schema/volumes.capnp.h"
#include "services/errors.hpp"

namespace cyto::services {

namespace {

struct service_methods {
  std::string service;
  std::vector<std::string> methods; // by method id
};

template <class Interface>
std::pair<uint64_t, service_methods> describe(const char* service) {
  auto schema = capnp::Schema::from<Interface>();
  service_methods out{service, {}};
  for (auto m : schema.getMethods())
    out.methods.emplace_back(m.getProto().getName().cStr());
  return {schema.getProto().getId(), std::move(out)};
}

/// Interface id -> public service name (as Node.services lists it) and method names.
const std::map<uint64_t, service_methods>& table() {
  static const std::map<uint64_t, service_methods> t{
    describe<schema::Discovery>("discovery"), describe<schema::Observe>("observe"),
    describe<schema::Cells>("cells"),         describe<schema::Images>("images"),
    describe<schema::Networks>("network"),    describe<schema::Containers>("containers"),
    describe<schema::Pods>("pods"),           describe<schema::Vms>("vms"),
    describe<schema::Volumes>("volumes"),
  };
  return t;
}

class authorizer final : public capnp::MembranePolicy, public kj::Refcounted {
public:
  authorizer(std::string identity, const access_policy& policy)
    : identity_(std::move(identity)), policy_(policy) {
  }

  kj::Maybe<capnp::Capability::Client> inboundCall(uint64_t interface_id, uint16_t method_id,
                                                   capnp::Capability::Client) override {
    auto verb = verb_of(interface_id, method_id);
    if (!verb && interface_id == capnp::typeId<schema::Node>())
      return nullptr; // Node's own accessors: open to every authenticated peer
    if (interface_id == capnp::typeId<schema::InputStream>())
      return nullptr; // a terminal's input: held only by whom containers.attach allowed
    if (verb && policy_.allows(identity_, *verb))
      return nullptr; // straight through
    // An interface the table does not name (a service added later) is refused, not let
    // through unchecked.
    auto why = identity_ + " may not "
               + verb.value_or("call interface " + std::to_string(interface_id) + " method "
                               + std::to_string(method_id));
    log::get("gateway")->warn("refused: {}", why);
    return capnp::Capability::Client(to_exception(errc::permission_denied, why));
  }

  kj::Maybe<capnp::Capability::Client> outboundCall(uint64_t, uint16_t,
                                                    capnp::Capability::Client) override {
    return nullptr; // calls on the client's own capabilities (sinks)
  }

  kj::Own<capnp::MembranePolicy> addRef() override {
    return kj::addRef(*this);
  }

private:
  std::string identity_;
  const access_policy& policy_;
};

} // namespace

std::optional<std::string> verb_of(uint64_t interface_id, uint16_t method_id) {
  auto& t = table();
  auto it = t.find(interface_id);
  if (it == t.end())
    return std::nullopt;
  auto& m = it->second.methods;
  return it->second.service + "."
         + (method_id < m.size() ? m[method_id] : "method" + std::to_string(method_id));
}

bool known_verb(std::string_view service, std::string_view method) {
  for (auto& [id, s] : table()) {
    if (s.service != service)
      continue;
    if (method == "*")
      return true;
    for (auto& m : s.methods)
      if (m == method)
        return true;
  }
  return false;
}

capnp::Capability::Client authorize(capnp::Capability::Client node, std::string identity,
                                    const access_policy& policy) {
  return capnp::membrane(kj::mv(node), kj::refcounted<authorizer>(std::move(identity), policy));
}

} // namespace cyto::services
