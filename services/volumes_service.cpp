#include "services/volumes_service.hpp"

#include "services/cancellable.hpp"

namespace cyto::services {

namespace {

void to_capnp(const volume_info& v, schema::VolumeInfo::Builder out) {
  out.setName(v.name);
  out.setPath(v.path);
  out.setCreatedUnixNanos(v.created_unix_nanos);
  auto users = out.initUsers(v.users.size());
  for (uint i = 0; i < v.users.size(); ++i) {
    users[i].setId(v.users[i].id);
    users[i].setName(v.users[i].name);
  }
}

class volumes_service final : public cancellable<schema::Volumes::Server> {
public:
  volumes_service(bridge& br, volumes_actor volumes) : bridge_(br), volumes_(std::move(volumes)) {
  }

  kj::Promise<void> create(CreateContext context) override {
    return bridge_.request(volumes_, create_atom::value, std::string{context.getParams().getName()})
      .then([context](volume_info v) mutable { to_capnp(v, context.getResults().initInfo()); });
  }

  kj::Promise<void> list(ListContext context) override {
    return bridge_.request(volumes_, list_atom::value)
      .then([context](std::vector<volume_info> all) mutable {
        auto out = context.getResults().initVolumes(all.size());
        for (uint i = 0; i < all.size(); ++i)
          to_capnp(all[i], out[i]);
      });
  }

  kj::Promise<void> inspect(InspectContext context) override {
    return bridge_.request(volumes_, get_atom::value, std::string{context.getParams().getName()})
      .then([context](volume_info v) mutable { to_capnp(v, context.getResults().initInfo()); });
  }

  kj::Promise<void> remove(RemoveContext context) override {
    auto p = context.getParams();
    return bridge_.request(volumes_, delete_atom::value, std::string{p.getName()}, p.getForce());
  }

private:
  bridge& bridge_;
  volumes_actor volumes_;
};

} // namespace

kj::Own<schema::Volumes::Server> new_volumes_service(bridge& br, volumes_actor volumes) {
  return kj::heap<volumes_service>(br, std::move(volumes));
}

} // namespace cyto::services
