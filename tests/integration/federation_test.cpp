// Integration tests of federation: three real cytod, each in a network namespace this
// test makes, joined by veth pairs to a bridge in a fourth ("switch") namespace, form one
// federation over CAF's middleman with TLS (certificates made by deploy/make-pki). The
// host namespace is never touched: every address is on that private bridge. The tests
// drive the nodes with the cyto CLI (--node) and check membership, liveness (kill,
// SIGSTOP, restart), and that impostors are refused: a node of another CA, a node that
// claims another node's name with its own valid certificate (a forged join sent by this
// test from the switch namespace), and garbage on the federation port. Needs root.
#define BOOST_TEST_MODULE integration_federation
#include <boost/test/unit_test.hpp>

#include <sched.h>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <nlohmann/json.hpp>

#include "bus/errc.hpp"
#include "bus/federation_actor.hpp"
#include "bus/node_identity.hpp"
#include "bus/types.hpp"
#include "tests/integration/federation_fixture.hpp"

using namespace cyto::test;
using nlohmann::json;

BOOST_TEST_GLOBAL_FIXTURE(root_required);

namespace {

federation_world* the_world = nullptr;

federation_world& world() {
  return *the_world;
}

/// A CAF node in the switch namespace that speaks the federation protocol with the
/// certificate of `cert_name` (signed by the federation's CA): what an impostor can do.
struct rogue_node {
  in_netns ns;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<cyto::bus::node_identity> id;

  rogue_node(const std::string& pki, const std::string& cert_name)
    : ns(world().sw.path()) {
    cyto::bus::add_types(cfg);
    cyto::bus::federation_config fed;
    fed.cert_file = pki + "/nodes/" + cert_name + ".crt";
    fed.key_file = pki + "/nodes/" + cert_name + ".key";
    fed.ca_file = pki + "/ca.crt";
    cyto::bus::configure_federation(cfg, fed);
    sys = std::make_unique<caf::actor_system>(cfg);
    std::string why;
    id = cyto::bus::node_identity::load(fed.cert_file, fed.key_file, fed.ca_file, cert_name, why);
    if (!id)
      throw std::runtime_error("rogue identity: " + why);
  }
  ~rogue_node() {
    sys.reset(); // its threads end before we leave the namespace
  }

  cyto::federation_door_actor door_of(const member& m) {
    auto d = caf::openssl::remote_actor<cyto::federation_door_actor>(*sys, m.ip, fed_port);
    if (!d)
      throw std::runtime_error("rogue: cannot reach the door of " + m.name() + ": "
                               + sys->render(d.error()));
    return *d;
  }

  std::string challenge(const cyto::federation_door_actor& door) {
    caf::scoped_actor self{*sys};
    std::string out;
    self->request(door, 5s, cyto::challenge_atom::value)
      .receive([&](std::string& c) { out = c; },
               [&](caf::error& e) { throw std::runtime_error("challenge: " + cyto::render(e)); });
    return out;
  }

  /// Sends a join claiming `claimed`, answering `answers` for verifier `verifier`;
  /// returns the error text ("" if it was admitted, the answer then in `*answer`).
  std::string join(const cyto::federation_door_actor& door, const std::string& claimed,
                   const std::string& answers, const std::string& verifier,
                   cyto::node_proof* answer = nullptr) {
    caf::scoped_actor self{*sys};
    auto dummy = sys->spawn([]() -> caf::behavior {
      return {[](cyto::ping_atom, int64_t x) { return x; }};
    });
    cyto::node_proof p;
    p.name = claimed;
    p.cert_pem = id->cert_pem();
    p.answers = answers;
    p.signature = id->sign(cyto::bus::node_identity::proof_text(answers, claimed, verifier));
    p.challenge = cyto::bus::node_identity::fresh_challenge();
    p.door = dummy;
    std::string out;
    self->request(door, 5s, cyto::join_atom::value, std::move(p))
      .receive(
        [&](cyto::node_proof& x) {
          out = "";
          if (answer)
            *answer = std::move(x);
        },
               [&](caf::error& e) { out = cyto::render(e); });
    caf::anon_send_exit(dummy, caf::exit_reason::user_shutdown);
    return out;
  }
};

struct world_fixture {
  federation_world w{3, {"impostor"}};
  world_fixture() {
    the_world = &w;
  }
};

} // namespace

BOOST_TEST_GLOBAL_FIXTURE(world_fixture);

BOOST_AUTO_TEST_CASE(three_nodes_form_one_federation) {
  auto& w = world();
  w.wait_formed();
  // Pings run every 250 ms: soon every member has a measured round trip.
  w.wait_until(
    [&] {
      for (auto* m : {&w.a(), &w.b(), &w.c()})
        for (auto& [name, n] : m->nodes())
          if (name != m->name() && n["rttNanos"].get<int64_t>() <= 0)
            return false;
      return true;
    },
    5s, "every member has a round-trip time");
  for (auto* m : {&w.a(), &w.b(), &w.c()}) {
    auto all = m->nodes();
    BOOST_TEST(all.size() >= 3u);
    BOOST_TEST(all[m->name()]["local"] == true);
    for (auto* p : {&w.a(), &w.b(), &w.c()}) {
      BOOST_TEST(all[p->name()]["state"] == "up");
      BOOST_TEST(all[p->name()]["address"] == p->address());
      if (p != m) {
        BOOST_TEST(all[p->name()]["lastHeartbeatNanos"].get<int64_t>() > 0);
        BOOST_TEST(all[p->name()]["rttNanos"].get<int64_t>() > 0);
      }
    }
  }
  auto table = w.a().cli({"node", "ls"});
  BOOST_TEST(table.code() == 0);
  BOOST_TEST(contains(table.out, w.a().name() + " *"));
  BOOST_TEST(contains(table.out, "STATE"));
}

BOOST_AUTO_TEST_CASE(verbs_run_on_another_node_through_this_one) {
  auto& w = world();
  w.wait_formed();
  auto disc = w.a().cli({"--node", w.c().name(), "--json", "discover"});
  BOOST_TEST_REQUIRE(disc.code() == 0, disc.err);
  BOOST_TEST(json::parse(disc.out)["nodeName"] == w.c().name());
  auto run = w.a().cli({"--node", w.c().name(), "run", "--rm", "demo", "echo", "hi"}, 60s);
  BOOST_TEST_REQUIRE(run.code() == 0, run.err + w.logs());
  BOOST_TEST(run.out == "hi\n");
  // It runs on c: c lists the container, a does not.
  auto kept = w.a().cli({"--node", w.c().name(), "run", "--name", "fed-where", "demo", "true"}, 60s);
  BOOST_TEST_REQUIRE(kept.code() == 0, kept.err);
  auto on_c = w.c().cli({"ps", "-a", "--json"});
  auto on_a = w.a().cli({"ps", "-a", "--json"});
  BOOST_TEST(contains(on_c.out, "fed-where"), on_c.out + on_c.err);
  BOOST_TEST(!contains(on_a.out, "fed-where"), on_a.out);
  auto rm = w.a().cli({"--node", w.c().name(), "rm", "-f", "fed-where"});
  BOOST_TEST(rm.code() == 0, rm.err);
  // Streams come back over the bus too: b's own log, read through a.
  auto logs = w.a().cli({"--node", w.b().name(), "logs", "--daemon", "--tail", "50"});
  BOOST_TEST_REQUIRE(logs.code() == 0, logs.err);
  BOOST_TEST(contains(logs.out, "node=" + w.b().name()), logs.out);
  // The verb-level flag works too, and a node can name itself.
  auto self = w.a().cli({"discover", "--json", "--node", w.a().name()});
  BOOST_TEST_REQUIRE(self.code() == 0, self.err);
  BOOST_TEST(json::parse(self.out)["nodeName"] == w.a().name());
  // Node.nodes through another node is that node's view (itself first and local).
  auto via = w.a().cli({"--node", w.b().name(), "node", "ls", "--json"});
  BOOST_TEST_REQUIRE(via.code() == 0, via.err);
  auto first = json::parse(lines_of(via.out).front());
  BOOST_TEST(first["name"] == w.b().name());
  BOOST_TEST(first["local"] == true);
}

BOOST_AUTO_TEST_CASE(unknown_node_is_not_found) {
  auto& w = world();
  auto r = w.a().cli({"--node", "no-such-node", "discover"});
  BOOST_TEST(r.code() == 1);
  BOOST_TEST(contains(r.err, "cyto.not_found"), r.err);
  BOOST_TEST(contains(r.err, "no-such-node"), r.err);
  auto empty = w.a().cli({"--node", "", "discover"});
  BOOST_TEST(empty.code() == 0, empty.err); // empty means this node
}

BOOST_AUTO_TEST_CASE(killed_node_is_marked_down_fails_fast_and_rejoins) {
  auto& w = world();
  w.wait_formed();
  auto b = w.b().name();
  // A call waiting on b when it dies fails too, at once, instead of waiting forever.
  child_process waiting{{cli_path, "--socket", w.a().d.socket_path(), "--node", b, "run", "--rm",
                         "--name", "fed-waiting", "demo", "sleep", "60"}};
  w.wait_until([&] { return contains(w.b().cli({"ps", "--json"}).out, "fed-waiting"); }, 20s,
               "the waiting container runs on b");
  w.b().d.stop(SIGKILL);
  auto killed_at = steady::now();
  auto st = waiting.wait(5s);
  BOOST_TEST(exit_code(st) != 0);
  BOOST_TEST(contains(waiting.err(), "cyto.unavailable: node " + b + " is down"), waiting.err());
  BOOST_TEST((steady::now() - killed_at < 2s));
  w.wait_until([&] { return w.a().state_of(b) == "down" && w.c().state_of(b) == "down"; }, 5s,
               "a and c see b down");
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - killed_at);
  BOOST_TEST(took.count() < 2000, "b was marked down after " << took.count() << " ms");
  auto start = steady::now();
  auto r = w.a().cli({"--node", b, "discover"});
  BOOST_TEST(r.code() == 1);
  BOOST_TEST(contains(r.err, "cyto.unavailable: node " + b + " is down"), r.err);
  BOOST_TEST((steady::now() - start < 2s));
  w.b().start();
  w.wait_until([&] { return w.a().state_of(b) == "up" && w.c().state_of(b) == "up"; }, 10s,
               "b rejoins");
  auto again = w.a().cli({"--node", b, "run", "--rm", "demo", "echo", "back"}, 60s);
  BOOST_TEST(again.code() == 0, again.err);
  BOOST_TEST(again.out == "back\n");
}

BOOST_AUTO_TEST_CASE(stopped_node_is_marked_down_and_comes_back) {
  auto& w = world();
  w.wait_formed();
  auto c = w.c().name();
  ::kill(w.c().d.pid(), SIGSTOP);
  std::chrono::milliseconds took{0};
  try {
    took = w.wait_until([&] { return w.a().state_of(c) == "down" && w.b().state_of(c) == "down"; },
                        5s, "a and b see the stopped c down");
  } catch (...) {
    ::kill(w.c().d.pid(), SIGCONT);
    throw;
  }
  BOOST_TEST(took.count() < 2000, "c was marked down after " << took.count() << " ms");
  auto r = w.a().cli({"--node", c, "discover"});
  BOOST_TEST(contains(r.err, "cyto.unavailable"), r.err);
  ::kill(w.c().d.pid(), SIGCONT);
  w.wait_until([&] { return w.a().state_of(c) == "up" && w.b().state_of(c) == "up"; }, 10s,
               "c comes back");
  auto d = w.a().cli({"--node", c, "discover"});
  BOOST_TEST(d.code() == 0, d.err);
}

BOOST_AUTO_TEST_CASE(node_of_another_ca_is_refused) {
  auto& w = world();
  w.wait_formed();
  temp_dir other;
  daemon_fixture x{false};
  auto pki = other / "pki";
  auto made = run_process({std::string{CYTO_SOURCE_DIR} + "/deploy/make-pki", pki, "--node",
                           x.node_name()},
                          60s);
  BOOST_TEST_REQUIRE(made.code() == 0, made.err);
  // It runs next to c (same namespace, another port) and wants to join a.
  run_in(x, w.c().ns);
  auto args = federation_world::tls_args(pki, x.node_name());
  args.insert(args.end(), {"--federation-listen", w.c().ip + ":7002", "--peer",
                           w.a().name() + "@" + w.a().address()});
  auto downs_before = count_of(w.a().d.log(), " is down: ");
  x.start(args, 20s);
  w.wait_until([&] { return contains(w.a().d.log(), "TLS handshake from " + w.c().ip); }, 10s,
               "a logs the refused handshake");
  std::this_thread::sleep_for(1s);
  BOOST_TEST(w.a().nodes().count(x.node_name()) == 0u);
  BOOST_TEST(contains(x.log(), "TLS handshake to " + w.a().address() + " failed"), x.log());
  // Its failed handshakes do not disturb the members' own connections.
  BOOST_TEST(w.all_up(w.a()));
  BOOST_TEST(count_of(w.a().d.log(), " is down: ") == downs_before, w.a().d.log());
  x.stop(SIGTERM);
}

BOOST_AUTO_TEST_CASE(node_claiming_another_name_is_refused) {
  auto& w = world();
  w.wait_formed();
  rogue_node rogue{w.pki_dir(), "impostor"};
  auto door = rogue.door_of(w.a());
  // A valid certificate of our CA, but it says spiffe://cyto.local/node/impostor.
  auto err = rogue.join(door, w.b().name(), rogue.challenge(door), w.a().name());
  BOOST_TEST(contains(err, "cyto.permission_denied"), err);
  BOOST_TEST(contains(err, "is not spiffe://cyto.local/node/" + w.b().name()), err);
  BOOST_TEST(contains(w.a().d.log(), "refused node '" + w.b().name() + "'"));
  // Claiming to be a itself.
  err = rogue.join(door, w.a().name(), rogue.challenge(door), w.a().name());
  BOOST_TEST(contains(err, "cyto.permission_denied"), err);
  // Its own name, but a signature for another verifier: no replay elsewhere.
  err = rogue.join(door, "impostor", rogue.challenge(door), w.c().name());
  BOOST_TEST(contains(err, "signature"), err);
  // A challenge is good once.
  auto ch = rogue.challenge(door);
  BOOST_TEST(rogue.join(door, "impostor", ch, w.a().name()).empty());
  err = rogue.join(door, "impostor", ch, w.a().name());
  BOOST_TEST(contains(err, "answers no challenge of ours"), err);
  // One nobody handed out.
  err = rogue.join(door, "impostor", std::string(64, 'a'), w.a().name());
  BOOST_TEST(contains(err, "answers no challenge of ours"), err);
  // The members are untouched, and b is still b.
  BOOST_TEST(w.a().state_of(w.b().name()) == "up");
  auto disc = w.a().cli({"--node", w.b().name(), "--json", "discover"});
  BOOST_TEST(json::parse(disc.out)["nodeName"] == w.b().name());
}

// What a joined node holds are the public handles of a's services; cast to caf::actor,
// they still reach the actors, so the actors must drop internal messages (exits,
// timeouts, job results) that do not come from themselves: a forged exit must not end
// the record of a running process, a forged stop timeout must not SIGKILL a container.
BOOST_AUTO_TEST_CASE(internal_messages_from_another_node_are_ignored) {
  auto& w = world();
  w.wait_formed();
  auto& a = w.a();
  auto ok = [&](std::vector<std::string> args) {
    auto r = a.cli(args, 60s);
    BOOST_TEST_REQUIRE(r.code() == 0, r.err + w.logs());
    return r.out;
  };
  ok({"cell", "allocate", "fed-forged"});
  ok({"cell", "start", "fed-forged", "--name", "sleeper", "--", "sleep", "30"});
  ok({"run", "-d", "--name", "fed-forged-c", "demo", "sleep", "30"});
  auto exe = [&] {
    return json::parse(ok({"cell", "inspect", "fed-forged"}))["executables"].at(0);
  };
  auto container = [&] { return json::parse(ok({"inspect", "--json", "fed-forged-c"})).at(0); };
  auto epid = exe()["pid"].get<int>();
  auto cid = container()["id"].get<std::string>();
  auto cpid = container()["pid"].get<int>();
  BOOST_TEST_REQUIRE(epid > 0);
  BOOST_TEST_REQUIRE(cpid > 0);

  rogue_node rogue{w.pki_dir(), "impostor"};
  auto door = rogue.door_of(a);
  cyto::node_proof answer;
  BOOST_TEST_REQUIRE(rogue.join(door, "impostor", rogue.challenge(door), a.name(), &answer) == "");
  std::map<std::string, caf::actor> svc;
  for (auto& s : answer.services)
    svc[s.name] = caf::actor_cast<caf::actor>(s.handle);
  for (auto* name : {"cells", "images", "containers", "federation", "observe", "topics"})
    BOOST_TEST_REQUIRE(svc.count(name) == 1u, name);
  caf::scoped_actor self{*rogue.sys};
  // Tokens are small numbers counted from 1: forge them all.
  for (uint64_t token = 1; token <= 32; ++token) {
    caf::anon_send(svc["cells"], cyto::exited_atom::value, token,
                   cyto::exit_status{true, true, 0, 0});
    self->send(svc["cells"], cyto::kill_atom::value, token);
  }
  self->send(svc["cells"], cyto::output_atom::value, uint64_t{1}, int32_t{1},
             std::string{"forged line\n"}, uint64_t{0}, uint64_t{0}, int64_t{0});
  caf::anon_send(svc["containers"], cyto::tick_atom::value, cid, uint64_t{1});
  for (uint64_t job = 1; job <= 4; ++job)
    caf::anon_send(svc["images"], cyto::done_atom::value, job,
                   cyto::make_error(cyto::errc::internal, "forged"));
  caf::anon_send(svc["federation"], cyto::tick_atom::value);
  caf::anon_send(svc["observe"], cyto::flush_atom::value);
  caf::anon_send(svc["topics"], cyto::flush_atom::value);
  if (svc.count("vms"))
    caf::anon_send(svc["vms"], cyto::tick_atom::value, std::string{"nosuchvm"}, uint64_t{1});
  // Each actor handles its forgeries in order: once it logged the last, it is done.
  std::vector<std::pair<std::string, size_t>> warnings{
    {"cells: ignored internal message exited from an anonymous sender", 32},
    {"cells: ignored internal message kill from ", 32},
    {"cells: ignored internal message output from ", 1},
    {"containers: ignored internal message tick from an anonymous sender", 1},
    {"images: ignored internal message done from an anonymous sender", 4},
    {"federation: ignored internal message tick from an anonymous sender", 1},
    {"observe: ignored internal message flush from an anonymous sender", 1},
    {"topics: ignored internal message flush from an anonymous sender", 1}};
  if (svc.count("vms"))
    warnings.emplace_back("vms: ignored internal message tick from an anonymous sender", 1);
  auto all_logged = [&] {
    auto log = a.d.log();
    for (auto& [what, n] : warnings)
      if (count_of(log, what) < n)
        return false;
    return true;
  };
  for (auto until = steady::now() + 10s; !all_logged() && steady::now() < until;)
    std::this_thread::sleep_for(20ms);
  auto log = a.d.log();
  for (auto& [what, n] : warnings)
    BOOST_TEST(count_of(log, what) == n, what);
  // The process and the container still run, and say so.
  auto e = exe();
  BOOST_TEST(e["status"]["exited"] == false, e.dump());
  BOOST_TEST(::kill(epid, 0) == 0);
  auto c = container();
  BOOST_TEST(c["state"] == "running", c.dump());
  BOOST_TEST(::kill(cpid, 0) == 0);
  // The members are untouched.
  BOOST_TEST(w.all_up(a));
  // The real exit still lands.
  a.cli({"cell", "stop", "fed-forged", "sleeper"});
  e = exe();
  BOOST_TEST(e["status"]["exited"] == true, e.dump());
  BOOST_TEST(e["status"]["signal"] == SIGTERM, e.dump());
  ok({"cell", "free", "fed-forged"});
  ok({"rm", "-f", "fed-forged-c"});
}

BOOST_AUTO_TEST_CASE(garbage_on_the_federation_port_does_not_crash_the_node) {
  auto& w = world();
  w.wait_formed();
  {
    in_netns ns{w.sw.path()};
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(fed_port);
    ::inet_pton(AF_INET, w.a().ip.c_str(), &addr.sin_addr);
    std::vector<std::string> payloads{std::string(5000, '\x00'), "GET / HTTP/1.1\r\n\r\n",
                                      std::string{"\x16\x03\x01\x02\x00\x01\x00\x01\xfc"}
                                        + std::string(600, '\xff')};
    std::string noise;
    for (int i = 0; i < 8192; ++i)
      noise += static_cast<char>((i * 7919 + 13) & 0xff);
    payloads.push_back(noise);
    std::vector<int> idle;
    for (auto& p : payloads) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      BOOST_TEST_REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
      [[maybe_unused]] auto n = ::write(fd, p.data(), p.size());
      ::close(fd);
    }
    // And connections that say nothing at all.
    for (int i = 0; i < 3; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0)
        idle.push_back(fd);
    }
    std::this_thread::sleep_for(500ms);
    for (int fd : idle)
      ::close(fd);
  }
  BOOST_TEST(w.a().d.running());
  BOOST_TEST(w.all_up(w.a()));
  auto disc = w.a().cli({"--node", w.b().name(), "discover"});
  BOOST_TEST(disc.code() == 0, disc.err);
}
