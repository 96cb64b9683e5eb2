// The event fan-out, the pid resolver and the output history reader: plain logic fed
// with events and files directly (no kernel probe, no root).
#define BOOST_TEST_MODULE unit_actors_observe_events
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <sys/stat.h>

#include "actors/observe/fanout.hpp"
#include "actors/observe/output_history.hpp"
#include "actors/observe/resolver.hpp"

using namespace cyto;
using namespace cyto::observe;
namespace fs = std::filesystem;

namespace {

observed_event ev(event_kind kind, std::string cell, uint32_t tgid, std::string exe = "") {
  observed_event e;
  e.kind = kind;
  e.cell = std::move(cell);
  e.tgid = e.pid = tgid;
  e.executable = std::move(exe);
  return e;
}

struct collected {
  std::vector<std::pair<uint64_t, observed_event>> events;
  std::vector<std::pair<uint64_t, uint64_t>> lost;
};

collected drain(event_fanout& f, size_t max_batch = 1000) {
  collected out;
  f.drain(max_batch, [&](uint64_t id, std::vector<observed_event>&& es, uint64_t lost) {
    if (lost > 0)
      out.lost.emplace_back(id, lost);
    for (auto& e : es)
      out.events.emplace_back(id, std::move(e));
  });
  return out;
}

struct temp_dir {
  fs::path path;
  temp_dir() {
    char tmpl[] = "/tmp/cyto-unit-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  void write(const std::string& rel, const std::string& text) const {
    fs::create_directories((path / rel).parent_path());
    std::ofstream{path / rel} << text;
  }
};

} // namespace

BOOST_AUTO_TEST_CASE(nested_filter_sees_child_cells_and_a_sibling_filter_does_not) {
  event_filter nested{"app", true, "", 0};
  event_filter exact{"app", false, "", 0};
  event_filter sibling{"app2", true, "", 0};
  event_filter host{};
  auto child = ev(event_kind::signal, "app/worker", 10);
  BOOST_TEST(matches(nested, child));
  BOOST_TEST(!matches(exact, child));
  BOOST_TEST(!matches(sibling, child)); // "app2" is not under "app" nor the reverse
  BOOST_TEST(!matches(event_filter{"app/w", true, "", 0}, child)); // prefix of a name != parent
  BOOST_TEST(matches(host, child));
  BOOST_TEST(matches(host, ev(event_kind::exit, "", 11)));
  BOOST_TEST(!matches(exact, ev(event_kind::exit, "", 11)));
}

BOOST_AUTO_TEST_CASE(kind_and_executable_filters_select) {
  event_filter signals{"", false, "", kind_bit(event_kind::signal)};
  BOOST_TEST(matches(signals, ev(event_kind::signal, "a", 1)));
  BOOST_TEST(!matches(signals, ev(event_kind::exec, "a", 1)));
  event_filter exe{"a", false, "web", 0};
  BOOST_TEST(matches(exe, ev(event_kind::exit, "a", 1, "web")));
  BOOST_TEST(!matches(exe, ev(event_kind::exit, "a", 1, "db")));
  BOOST_TEST(!matches(exe, ev(event_kind::exit, "b", 1, "web")));
}

BOOST_AUTO_TEST_CASE(events_reach_only_matching_subscribers_in_order) {
  event_fanout f;
  f.add(1, event_filter{"a", false, "", 0}, 100, 100);
  f.add(2, event_filter{}, 100, 100);
  for (uint32_t i = 0; i < 5; ++i)
    f.publish(ev(event_kind::signal, i % 2 ? "a" : "b", i));
  auto got = drain(f);
  std::vector<uint32_t> one, two;
  for (auto& [id, e] : got.events)
    (id == 1 ? one : two).push_back(e.tgid);
  BOOST_TEST(one == (std::vector<uint32_t>{1, 3}));
  BOOST_TEST(two == (std::vector<uint32_t>{0, 1, 2, 3, 4}));
  BOOST_TEST(got.lost.empty());
  BOOST_TEST(f.stats().delivered == 7u);
}

BOOST_AUTO_TEST_CASE(a_stalled_subscriber_loses_counted_events_and_never_holds_up_another) {
  event_fanout f;
  f.add(1, event_filter{}, 10, 0);      // stalled: no credit, tiny queue
  f.add(2, event_filter{}, 1000, 1000); // keeps up
  for (uint32_t i = 0; i < 100; ++i)
    f.publish(ev(event_kind::signal, "", i));
  auto got = drain(f);
  size_t fast = 0;
  for (auto& [id, e] : got.events) {
    BOOST_TEST(id == 2u);
    ++fast;
  }
  BOOST_TEST(fast == 100u);
  // Without credit the stalled one is sent nothing, not even a "N lost" marker (a marker
  // per flush piled up capnp calls without bound); the losses are counted meanwhile.
  BOOST_TEST(got.lost.empty());
  BOOST_TEST(f.stats().lost == 90u);
  // Credit later hands out one marker with every loss, then the newest 10, in order.
  BOOST_TEST(f.grant(1, 100));
  auto later = drain(f);
  BOOST_REQUIRE(later.lost.size() == 1u);
  BOOST_TEST(later.lost[0].first == 1u);
  BOOST_TEST(later.lost[0].second == 90u);
  BOOST_REQUIRE(later.events.size() == 10u);
  BOOST_TEST(later.events.front().second.tgid == 90u);
  BOOST_TEST(later.events.back().second.tgid == 99u);
}

BOOST_AUTO_TEST_CASE(removed_subscribers_leave_nothing_behind) {
  event_fanout f;
  for (uint64_t id = 1; id <= 1000; ++id) {
    f.add(id, event_filter{}, 16, 16);
    f.publish(ev(event_kind::exec, "", 1));
    BOOST_TEST(f.remove(id));
  }
  BOOST_TEST(f.size() == 0u);
  BOOST_TEST(!f.remove(5));
  BOOST_TEST(drain(f).events.empty());
}

BOOST_AUTO_TEST_CASE(cgroup_paths_map_to_cells_on_v1_and_v2) {
  auto v1 = "12:pids:/cyto/web/_\n7:memory:/cyto/web/_\n0::/user.slice\n";
  BOOST_TEST(pid_resolver::cell_of(v1, "cyto") == "web");
  BOOST_TEST(pid_resolver::cell_of("0::/cyto/app/worker/_\n", "cyto") == "app/worker");
  BOOST_TEST(pid_resolver::cell_of("0::/cyto-other/app/_\n", "cyto") == "");
  BOOST_TEST(pid_resolver::cell_of("5:cpu:/system.slice\n", "cyto") == "");
  BOOST_TEST(pid_resolver::cell_of("0::/cyto/_\n", "cyto") == "");
}

BOOST_AUTO_TEST_CASE(resolver_reads_nspid_once_and_remembers_it_past_proc) {
  temp_dir proc;
  proc.write("42/cgroup", "4:memory:/cyto/web/_\n");
  proc.write("42/status", "Name:\tsleep\nPPid:\t41\nNSpid:\t42\t3\n");
  pid_resolver r{"cyto", proc.path.string()};
  ebpf::event sig{};
  sig.kind = ebpf::event_kind::signal;
  sig.pid = sig.tgid = 42;
  sig.signo = 10;
  sig.sender_tgid = 7;
  std::strcpy(sig.comm, "sleep");
  std::strcpy(sig.sender_comm, "kill");
  auto e = r.resolve(sig);
  BOOST_TEST(e.cell == "web");
  BOOST_TEST(e.ns_pid == 3u);
  BOOST_TEST(e.ppid == 41u);
  BOOST_TEST(e.signo == 10);
  BOOST_TEST(e.comm == "sleep");
  BOOST_TEST(e.sender_comm == "kill");
  // The process is gone from /proc by the time it exits: the cache answers.
  fs::remove_all(proc.path / "42");
  ebpf::event exit{};
  exit.kind = ebpf::event_kind::exit;
  exit.pid = exit.tgid = 42;
  exit.exit_status = 3 << 8;
  auto x = r.resolve(exit);
  BOOST_TEST(x.cell == "web");
  BOOST_TEST(x.ns_pid == 3u);
  BOOST_TEST(x.exit_code == 3);
  BOOST_TEST(x.exit_signal == 0);
  BOOST_TEST(r.stats().misses == 1u);
  BOOST_TEST(r.cached() == 0u); // the leader's exit forgets it
  exit.exit_status = 9;
  BOOST_TEST(r.resolve(exit).exit_signal == 9);
}

BOOST_AUTO_TEST_CASE(a_process_gone_from_proc_is_placed_by_its_cgroup_ids) {
  temp_dir proc, mount;
  // A v1 pids hierarchy with two cells (one nested), each with its process leaf "_".
  for (auto* d : {"pids/cyto/web/_", "pids/cyto/app/worker/_", "pids/other/_"})
    fs::create_directories(mount.path / d);
  auto ino = [&](const char* d) {
    struct stat st{};
    BOOST_REQUIRE(::stat((mount.path / d).c_str(), &st) == 0);
    return static_cast<uint64_t>(st.st_ino);
  };
  pid_resolver r{"cyto", proc.path.string(), 65536, mount.path.string()};
  ebpf::event exit{};
  exit.kind = ebpf::event_kind::exit;
  exit.pid = exit.tgid = 77;
  exit.ns_pid = exit.ns_tgid = 1;
  exit.exit_status = 9;
  exit.pids_cgroup_id = ino("pids/cyto/web/_");
  exit.cgroup_id = 1;
  auto x = r.resolve(exit);
  BOOST_TEST(x.cell == "web");
  BOOST_TEST(x.ns_pid == 1u); // from the event: /proc has nothing
  BOOST_TEST(x.exit_signal == 9);
  BOOST_TEST(r.stats().id_scans == 1u);
  exit.pids_cgroup_id = ino("pids/cyto/app/worker/_");
  BOOST_TEST(r.resolve(exit).cell == "app/worker"); // seen in the same walk
  BOOST_TEST(r.stats().id_scans == 1u);
  // Outside the daemon's subtree: no cell, and the answer is kept (ids are not reused).
  exit.pids_cgroup_id = ino("pids/other/_");
  BOOST_TEST(r.resolve(exit).cell == "");
  BOOST_TEST(r.resolve(exit).cell == "");
  BOOST_TEST(r.stats().id_scans == 2u);
  // A cell made after the last walk is found by the next one.
  fs::create_directories(mount.path / "pids/cyto/late/_");
  exit.pids_cgroup_id = ino("pids/cyto/late/_");
  BOOST_TEST(r.resolve(exit).cell == "late");
  // No ids at all (a kernel without them): no cell, no walk.
  exit.pids_cgroup_id = exit.cgroup_id = 0;
  auto before = r.stats().id_scans;
  BOOST_TEST(r.resolve(exit).cell == "");
  BOOST_TEST(r.stats().id_scans == before);
  // A process /proc still shows is placed by /proc, not by ids.
  proc.write("78/cgroup", "4:pids:/cyto/app/_\n");
  proc.write("78/status", "PPid:\t1\nNSpid:\t78\n");
  exit.pid = exit.tgid = 78;
  exit.pids_cgroup_id = ino("pids/cyto/web/_");
  BOOST_TEST(r.resolve(exit).cell == "app");
  // A zombie: /proc still has it, but its cgroups read as the roots. The ids place it.
  proc.write("79/cgroup", "8:pids:/\n4:memory:/\n0::/\n");
  proc.write("79/status", "State:\tZ (zombie)\nPPid:\t1\nNSpid:\t79\t2\n");
  exit.pid = exit.tgid = 79;
  auto z = r.resolve(exit);
  BOOST_TEST(z.cell == "web");
  BOOST_TEST(z.ns_pid == 2u);
}

BOOST_AUTO_TEST_CASE(history_stops_at_the_last_complete_line_of_a_running_writer) {
  temp_dir dir;
  dir.write("out", "one\ntwo\npart");
  dir.write("err", "e1\n");
  history_request req{(dir.path / "out").string(), (dir.path / "err").string(), out_both, true,
                      true};
  auto h = read_history(req);
  BOOST_REQUIRE(h.lines.size() == 3u);
  BOOST_TEST(h.lines[0].line == "one");
  BOOST_TEST(h.lines[1].line == "two");
  BOOST_TEST(h.lines[2].line == "e1");
  BOOST_TEST(h.lines[2].stream == 2);
  BOOST_TEST(h.end_offsets[1] == 8u); // "part" comes live, from offset 8
  BOOST_TEST(h.end_offsets[2] == 3u);
  req.running = false;
  h = read_history(req);
  BOOST_TEST(h.lines.size() == 4u);
  BOOST_TEST(h.lines[2].line == "part");
  BOOST_TEST(h.end_offsets[1] == 12u);
  req.from_start = false;
  h = read_history(req);
  BOOST_TEST(h.lines.empty());
  BOOST_TEST(h.end_offsets[1] == 12u);
}

BOOST_AUTO_TEST_CASE(history_keeps_the_newest_part_of_a_long_file_and_counts_the_rest) {
  temp_dir dir;
  std::string text;
  for (int i = 0; i < 100; ++i)
    text += "line" + std::to_string(i) + "\n";
  dir.write("out", text);
  history_request req{(dir.path / "out").string(), "", out_stdout, true, false, 40};
  auto h = read_history(req);
  BOOST_REQUIRE(!h.lines.empty());
  BOOST_TEST(h.lines.back().line == "line99");
  BOOST_TEST(h.skipped + h.lines.size() == 100u);
}
