#pragma once
// A network namespace a test (or benchmark) makes for the daemon it starts, so that
// bridges, veths, iptables rules and traffic never touch the host's namespace.

#include <string>
#include <vector>

#include "tests/integration/daemon_fixture.hpp"

namespace cyto::test {

/// `ip netns add cyto-t-<pid>-<n>` with lo up; deleted (with everything in it) at the end.
class test_netns {
public:
  test_netns() {
    static int n = 0;
    name_ = "cyto-t-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
    auto r = run_process({"/usr/sbin/ip", "netns", "add", name_});
    if (r.code() != 0)
      throw std::runtime_error("ip netns add " + name_ + ": " + r.err);
    try {
      ip({"link", "set", "lo", "up"});
    } catch (...) {
      run_process({"/usr/sbin/ip", "netns", "del", name_});
      throw;
    }
  }
  ~test_netns() {
    run_process({"/usr/sbin/ip", "netns", "del", name_});
  }
  test_netns(const test_netns&) = delete;
  test_netns& operator=(const test_netns&) = delete;

  std::string path() const {
    return "/run/netns/" + name_;
  }
  /// `ip -n <ns> args...`'s output; throws if it fails.
  std::string ip(std::vector<std::string> args) const {
    std::vector<std::string> argv{"/usr/sbin/ip", "-n", name_};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run_process(argv);
    if (r.code() != 0)
      throw std::runtime_error("ip -n " + name_ + " failed: " + r.err);
    return r.out;
  }
  /// Runs argv inside the namespace (the "host" side of the daemon's networks).
  process_result exec(std::vector<std::string> argv, std::chrono::milliseconds t = 15s) const {
    std::vector<std::string> a{"/usr/bin/nsenter", "--net=" + path(), "--"};
    a.insert(a.end(), argv.begin(), argv.end());
    return run_process(a, t);
  }

private:
  std::string name_;
};

/// Makes `d` run cytod inside `ns` (nsenter --net: only the network namespace changes;
/// `ip netns exec` would also remount /sys and hide the cgroup file systems).
inline void run_in(daemon_fixture& d, const test_netns& ns) {
  d.set_wrapper({"/usr/bin/nsenter", "--net=" + ns.path(), "--"});
}

} // namespace cyto::test
