#pragma once
// Every atom of the bus in one place (CAF 0.17 atoms hold at most 10 characters).

#include <caf/atom.hpp>

namespace cyto {

using caf::get_atom;
using caf::put_atom;
using caf::delete_atom;
using caf::ok_atom;

using list_atom = caf::atom_constant<caf::atom("list")>;
using subscribe_atom = caf::atom_constant<caf::atom("subscribe")>;
using unsub_atom = caf::atom_constant<caf::atom("unsub")>;
using publish_atom = caf::atom_constant<caf::atom("publish")>;
using demand_atom = caf::atom_constant<caf::atom("demand")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using stats_atom = caf::atom_constant<caf::atom("stats")>;
using discover_atom = caf::atom_constant<caf::atom("discover")>;
using health_atom = caf::atom_constant<caf::atom("health")>;
using allocate_atom = caf::atom_constant<caf::atom("allocate")>;
using free_atom = caf::atom_constant<caf::atom("free")>;
using start_atom = caf::atom_constant<caf::atom("start")>;
using stop_atom = caf::atom_constant<caf::atom("stop")>;
using wait_atom = caf::atom_constant<caf::atom("wait")>;
using exited_atom = caf::atom_constant<caf::atom("exited")>;
using output_atom = caf::atom_constant<caf::atom("output")>;
using kill_atom = caf::atom_constant<caf::atom("kill")>;
using logs_atom = caf::atom_constant<caf::atom("logs")>;
using pull_atom = caf::atom_constant<caf::atom("pull")>;
using import_atom = caf::atom_constant<caf::atom("import")>;
using prune_atom = caf::atom_constant<caf::atom("prune")>;
using mount_atom = caf::atom_constant<caf::atom("mount")>;
using unmount_atom = caf::atom_constant<caf::atom("unmount")>;
using done_atom = caf::atom_constant<caf::atom("done")>;
using events_atom = caf::atom_constant<caf::atom("events")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using history_atom = caf::atom_constant<caf::atom("history")>;
using create_atom = caf::atom_constant<caf::atom("create")>;
using attach_atom = caf::atom_constant<caf::atom("attach")>;
using detach_atom = caf::atom_constant<caf::atom("detach")>;
using check_atom = caf::atom_constant<caf::atom("check")>;
using run_atom = caf::atom_constant<caf::atom("run")>;
using init_atom = caf::atom_constant<caf::atom("init")>;
using exec_atom = caf::atom_constant<caf::atom("exec")>;
using pod_atom = caf::atom_constant<caf::atom("pod")>;
using challenge_atom = caf::atom_constant<caf::atom("challenge")>;
using join_atom = caf::atom_constant<caf::atom("join")>;
using ping_atom = caf::atom_constant<caf::atom("ping")>;
using dial_atom = caf::atom_constant<caf::atom("dial")>;
using dialed_atom = caf::atom_constant<caf::atom("dialed")>;
using pause_atom = caf::atom_constant<caf::atom("pause")>;
using resume_atom = caf::atom_constant<caf::atom("resume")>;
using trim_atom = caf::atom_constant<caf::atom("trim")>;
using copy_atom = caf::atom_constant<caf::atom("copy")>;

} // namespace cyto
