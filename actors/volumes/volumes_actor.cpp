#include "actors/volumes/volumes_actor.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <set>

#include <sys/stat.h>

#include <caf/all.hpp>

#include "actors/volumes/volume_rows.hpp"
#include "bus/errc.hpp"
#include "bus/logging.hpp"
#include "bus/random_id.hpp"

namespace cyto::volumes {

namespace {

using self_ptr = volumes_actor::stateful_pointer<volumes_state>;
namespace fs = std::filesystem;

constexpr size_t max_name = 128;

int64_t now_nanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string volume_dir(const volumes_state& st, const std::string& name) {
  return st.config.state_dir + "/volumes/" + name;
}

caf::error persist(self_ptr self, const volume_info& v, const char* state) {
  volume_row row{v};
  return self->state.db->put({kind_volume, v.name, state, store::to_blob(row)});
}

/// Deletes a volume's directory; the error says what could not go.
caf::error remove_dir(const std::string& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec)
    return make_error(errc::unavailable, "remove " + dir + ": " + ec.message());
  return {};
}

caf::expected<volume_info> create(self_ptr self, std::string name) {
  auto& st = self->state;
  if (name.empty())
    name = random_id();
  if (auto err = check_volume_name(name))
    return err;
  if (st.volumes.count(name))
    return make_error(errc::already_exists, "volume " + name + " exists");
  volume_info v;
  v.name = name;
  auto dir = volume_dir(st, name);
  v.path = dir + "/_data";
  v.created_unix_nanos = now_nanos();
  // The record first: a crash before the directory is finished is cleaned up at start.
  if (auto err = persist(self, v, "creating"))
    return err;
  auto undo = [&](const std::string& what, int err, bool made_dir) {
    if (made_dir)
      remove_dir(dir);
    st.db->erase(kind_volume, name);
    if (err == EEXIST) // not ours (no record): never deleted, see reconcile
      return make_error(errc::already_exists, dir + " exists without a volume record; move it "
                                                    "away or pick another name");
    return make_error(err == ENOSPC || err == EDQUOT ? errc::resource_exhausted : errc::unavailable,
                      what + ": " + std::strerror(err));
  };
  // 0700 above _data keeps other users of the host out; _data itself is the root of
  // what containers see (0755, as podman makes it).
  if (::mkdir(dir.c_str(), 0700) != 0)
    return undo("create " + dir, errno, false);
  if (::mkdir(v.path.c_str(), 0755) != 0)
    return undo("create " + v.path, errno, true);
  if (auto err = persist(self, v, "ready")) {
    remove_dir(dir);
    st.db->erase(kind_volume, name);
    return err;
  }
  st.log->info("created volume {}", name);
  return st.volumes[name] = v;
}

std::string users_text(const volume_info& v) {
  std::string out;
  for (auto& u : v.users)
    out += (out.empty() ? "" : ", ") + (u.name.empty() ? u.id.substr(0, 12) : u.name);
  return out;
}

caf::error remove(self_ptr self, const std::string& name, bool force) {
  auto& st = self->state;
  auto i = st.volumes.find(name);
  if (i == st.volumes.end()) {
    if (force)
      return {};
    if (auto err = check_volume_name(name))
      return err;
    return make_error(errc::not_found, "volume " + name + " does not exist");
  }
  if (!i->second.users.empty())
    return make_error(errc::failed_precondition,
                      "volume " + name + " is in use by container(s) " + users_text(i->second)
                          + "; remove them first");
  if (auto err = persist(self, i->second, "removing"))
    return err;
  st.volumes.erase(i);
  if (auto err = remove_dir(volume_dir(st, name))) {
    // The row stays "removing": the next start tries again.
    st.log->error("volume {}: {}", name, render(err));
    return err;
  }
  st.db->erase(kind_volume, name);
  st.log->info("removed volume {}", name);
  return {};
}

/// Drops the claims of the users `drop` selects from every volume (rewriting its record).
template <class Pred>
void release_if(self_ptr self, Pred drop) {
  auto& st = self->state;
  for (auto& [name, v] : st.volumes) {
    auto gone = std::stable_partition(v.users.begin(), v.users.end(),
                                      [&](const volume_user& u) { return !drop(u); });
    if (gone == v.users.end())
      continue;
    for (auto u = gone; u != v.users.end(); ++u)
      st.log->info("volume {}: released by container {} ({})", name, u->name, u->id.substr(0, 12));
    v.users.erase(gone, v.users.end());
    if (auto err = persist(self, v, "ready"))
      st.log->error("volume {}: record the release: {}", name, render(err));
  }
}

/// Claims are this node's containers' business: another node of the federation (which
/// reaches every service in the registry) may list and make volumes, not take claims away.
caf::error local_only(self_ptr self, const char* what) {
  auto& from = self->current_sender();
  if (from && from->node() != self->node())
    return make_error(errc::permission_denied,
                      std::string{what} + " of volume claims is for this node's containers only");
  return {};
}

caf::result<volume_info, bool> claim(self_ptr self, volume_claim& c) {
  if (auto err = local_only(self, "a claim"))
    return err;
  auto& st = self->state;
  if (c.user.id.empty())
    return make_error(errc::invalid_argument, "a volume claim needs a container id");
  bool made = false;
  auto i = st.volumes.find(c.volume);
  if (i == st.volumes.end()) {
    if (c.volume.empty())
      return make_error(errc::invalid_argument, "a volume claim needs a volume name");
    auto v = create(self, c.volume);
    if (!v)
      return std::move(v.error());
    made = true;
    i = st.volumes.find(c.volume);
  }
  auto& v = i->second;
  bool held = std::any_of(v.users.begin(), v.users.end(),
                          [&](const volume_user& u) { return u.id == c.user.id; });
  if (!held) {
    v.users.push_back(c.user);
    if (auto err = persist(self, v, "ready")) {
      v.users.pop_back();
      return err;
    }
    st.log->info("volume {}: claimed by container {} ({})", v.name, c.user.name,
                 c.user.id.substr(0, 12));
  }
  return caf::result<volume_info, bool>{v, made};
}

/// After a (re)start: finishes what a crash cut short and checks the directories.
void reconcile(self_ptr self) {
  auto& st = self->state;
  std::vector<std::string> dropped;
  auto rows = st.db->load_all<volume_row>(kind_volume, dropped);
  for (auto& k : dropped)
    st.log->error("state.db: unreadable volume record {}; quarantined (cyto health)", k);
  if (!rows) {
    st.log->error("read volumes from state.db: {}", render(rows.error()));
    return;
  }
  for (auto& [r, row] : *rows) {
    auto& v = row.info;
    auto dir = volume_dir(st, v.name);
    if (r.state != "ready") {
      // "creating": the directory may be half made; "removing": the data half gone.
      st.log->warn("cleaning up half-{} volume {}", r.state == "creating" ? "made" : "removed",
                   v.name);
      if (auto err = remove_dir(dir)) {
        st.log->error("volume {}: {}", v.name, render(err));
        continue;
      }
      st.db->erase(kind_volume, v.name);
      continue;
    }
    struct stat sb{};
    if (::stat(v.path.c_str(), &sb) != 0 || !S_ISDIR(sb.st_mode)) {
      st.log->warn("volume {}: {} is missing; made empty again", v.name, v.path);
      std::error_code ec;
      fs::create_directories(v.path, ec);
      ::chmod(dir.c_str(), 0700);
    }
    st.volumes[v.name] = std::move(v);
  }
  // A directory without a record is no volume of ours: reported, never deleted (it may
  // hold someone's data).
  std::error_code ec;
  for (auto& e : fs::directory_iterator{st.config.state_dir + "/volumes", ec})
    if (!st.volumes.count(e.path().filename().string()))
      st.log->warn("{} is no volume (no record in state.db); left alone", e.path().string());
}

} // namespace

caf::error check_volume_name(const std::string& name) {
  bool ok = !name.empty() && name.size() <= max_name
            && std::isalnum(static_cast<unsigned char>(name[0]));
  for (char c : name)
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-');
  if (!ok)
    return make_error(errc::invalid_argument,
                      "volume name '" + name + "': 1-" + std::to_string(max_name)
                          + " of [A-Za-z0-9_.-], starting with a letter or digit");
  return {};
}

std::string volumes_config::validate() const {
  if (state_dir.empty() || state_dir.front() != '/')
    return "state_dir must be an absolute path";
  return {};
}

volumes_actor::behavior_type volumes(self_ptr self, volumes_config config) {
  auto& st = self->state;
  st.config = std::move(config);
  st.log = log::get("volumes");
  auto fail = [&](caf::error cause) -> volumes_actor::behavior_type {
    st.log->error("volumes unavailable: {}", render(cause));
    auto why = make_error(errc::unavailable, "volumes: " + context_of(cause));
    return {
        [why](create_atom, std::string&) -> caf::result<volume_info> { return why; },
        [why](delete_atom, std::string&, bool) -> caf::result<void> { return why; },
        [why](list_atom) -> caf::result<std::vector<volume_info>> { return why; },
        [why](get_atom, std::string&) -> caf::result<volume_info> { return why; },
        [why](attach_atom, volume_claim&) -> caf::result<volume_info, bool> { return why; },
        [why](detach_atom, std::string&) -> caf::result<void> { return why; },
        [why](trim_atom, std::vector<std::string>&) -> caf::result<void> { return why; },
    };
  };
  std::error_code ec;
  fs::create_directories(st.config.state_dir + "/volumes", ec);
  if (ec)
    return fail(make_error(errc::internal,
                           "create " + st.config.state_dir + "/volumes: " + ec.message()));
  ::chmod((st.config.state_dir + "/volumes").c_str(), 0700);
  auto db = store::state_db::open(st.config.state_dir + "/state.db");
  if (!db)
    return fail(db.error());
  st.db = std::move(*db);
  st.db->declare(kind_volume, volume_row_version);
  reconcile(self);
  st.log->info("volumes ready: {} volumes", st.volumes.size());
  return {
      [self](create_atom, std::string& name) -> caf::result<volume_info> {
        auto v = create(self, std::move(name));
        if (!v)
          return std::move(v.error());
        return std::move(*v);
      },
      [self](delete_atom, std::string& name, bool force) -> caf::result<void> {
        if (auto err = remove(self, name, force))
          return err;
        return caf::unit; // an empty caf::error would be an error "cyto.ok"
      },
      [self](list_atom) {
        std::vector<volume_info> out;
        for (auto& [name, v] : self->state.volumes)
          out.push_back(v);
        return out;
      },
      [self](get_atom, std::string& name) -> caf::result<volume_info> {
        auto i = self->state.volumes.find(name);
        if (i == self->state.volumes.end()) {
          if (auto err = check_volume_name(name))
            return err;
          return make_error(errc::not_found, "volume " + name + " does not exist");
        }
        return i->second;
      },
      [self](attach_atom, volume_claim& c) -> caf::result<volume_info, bool> {
        return claim(self, c);
      },
      [self](detach_atom, std::string& id) -> caf::result<void> {
        if (auto err = local_only(self, "a release"))
          return err;
        release_if(self, [&](const volume_user& u) { return u.id == id; });
        return caf::unit;
      },
      [self](trim_atom, std::vector<std::string>& live) -> caf::result<void> {
        if (auto err = local_only(self, "a trim"))
          return err;
        std::set<std::string> keep{live.begin(), live.end()};
        release_if(self, [&](const volume_user& u) { return keep.count(u.id) == 0; });
        return caf::unit;
      },
  };
}

} // namespace cyto::volumes
