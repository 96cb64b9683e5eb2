#include "actors/vms/qmp_session.hpp"

#include <csignal>

#include <caf/all.hpp>

#include "bus/errc.hpp"
#include "bus/internal.hpp"

namespace cyto::vms {

namespace {

using nlohmann::json;

bool process_alive(uint32_t pid) {
  return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
}

/// Reads until the connection closes; every line goes to the session as a message, sent
/// as the session itself (internal: its handlers accept them from nobody else).
void read_loop(qmp_client* client, caf::actor_addr session) {
  for (;;) {
    auto m = client->read();
    auto h = caf::actor_cast<caf::strong_actor_ptr>(session);
    if (!h)
      return;
    auto s = caf::actor_cast<qmp_session_private>(h);
    if (!m) {
      if (code_of(m.error()) == errc::unavailable) {
        caf::send_as(s, s, done_atom::value);
        return;
      }
      continue; // an unparsable line: skip it
    }
    // Re-serialised: the actor parses once more, which keeps the message inspectable.
    json j;
    if (m->type == qmp_message::kind::event)
      j = {{"event", m->name}, {"data", m->data}};
    else if (m->type == qmp_message::kind::error)
      j = {{"error", {{"class", m->name}, {"desc", m->data}}}, {"id", m->id}};
    else if (m->type == qmp_message::kind::reply)
      j = {{"return", m->data}, {"id", m->id}};
    else
      continue;
    caf::send_as(s, s, output_atom::value, j.dump());
  }
}

} // namespace

qmp_session_state::~qmp_session_state() {
  if (client)
    client->shutdown();
  if (reader.joinable())
    reader.join();
}

qmp_session_private::behavior_type
qmp_session(qmp_session_private::stateful_pointer<qmp_session_state> self, vms_private owner,
            std::string vm) {
  self->state.owner = std::move(owner);
  self->state.vm = std::move(vm);
  return {
      [self](start_atom, std::string& path, uint32_t pid,
             uint32_t timeout_ms) -> caf::result<std::string> {
        auto& st = self->state;
        if (st.client)
          return make_error(errc::failed_precondition, "QMP session already connected");
        auto c = qmp_client::connect(path, std::chrono::milliseconds{timeout_ms},
                                     [pid] { return process_alive(pid); });
        if (!c)
          return std::move(c.error());
        st.client = std::make_unique<qmp_client>(std::move(*c));
        st.reader = std::thread{read_loop, st.client.get(), self->address()};
        return st.client->version();
      },
      [self](exec_atom, std::string& command, std::string& args) -> caf::result<std::string> {
        auto& st = self->state;
        if (!st.client)
          return make_error(errc::unavailable, "QMP session not connected");
        json arguments;
        if (!args.empty()) {
          arguments = json::parse(args, nullptr, false);
          if (arguments.is_discarded())
            return make_error(errc::invalid_argument, "QMP arguments are not JSON: " + args);
        }
        auto id = st.client->send(command, arguments);
        if (!id)
          return std::move(id.error());
        auto rp = self->make_response_promise<std::string>();
        st.pending.emplace(static_cast<int64_t>(*id), rp);
        return rp;
      },
      bus::internal(self, [self](output_atom, std::string& line) {
        auto& st = self->state;
        auto m = parse_qmp(line);
        if (!m)
          return;
        if (m->type == qmp_message::kind::event) {
          self->send(st.owner, qmp_event{st.vm, m->name, m->data.dump()});
          return;
        }
        auto i = st.pending.find(m->id);
        if (i == st.pending.end())
          return;
        auto rp = i->second;
        st.pending.erase(i);
        if (m->type == qmp_message::kind::error)
          rp.deliver(make_error(errc::failed_precondition,
                                "QMP: " + m->name + ": " + m->data.get<std::string>()));
        else
          rp.deliver(m->data.dump());
      }),
      bus::internal(self, [self](done_atom) {
        auto& st = self->state;
        for (auto& [id, rp] : st.pending)
          rp.deliver(make_error(errc::unavailable, "QMP connection closed"));
        st.pending.clear();
        self->send(st.owner, qmp_event{st.vm, std::string{}, std::string{}});
        self->quit();
      }),
  };
}

} // namespace cyto::vms
