#pragma once
// The QMP session actor: one connection to one QEMU. Spawned detached (its connect
// blocks); a reader thread turns QEMU's lines into messages to it.

#include <memory>
#include <string>
#include <thread>
#include <unordered_map>

#include "actors/vms/qmp.hpp"
#include "actors/vms/vms_actor.hpp"
#include "bus/interfaces.hpp"

namespace cyto::vms {

/// The session as it is spawned: qmp_session_actor (what the vms actor holds) and the
/// messages only its reader thread sends it, as the session (see bus/internal.hpp).
using qmp_session_private = qmp_session_actor::extend<
  /// The reader thread read a line.
  caf::reacts_to<output_atom, std::string>,
  /// The reader thread saw the connection close.
  caf::reacts_to<done_atom>>;

struct qmp_session_state {
  static constexpr const char* name = "qmp_session";
  ~qmp_session_state();

  /// The VM it serves (named in its events) and who gets them.
  std::string vm;
  vms_private owner;
  std::unique_ptr<qmp_client> client;
  std::thread reader;
  std::unordered_map<int64_t, caf::typed_response_promise<std::string>> pending;
};

/// The session behavior; `owner` receives qmp_event{vm, ...}.
qmp_session_private::behavior_type
qmp_session(qmp_session_private::stateful_pointer<qmp_session_state> self, vms_private owner,
            std::string vm);

} // namespace cyto::vms
