#include "actors/containers/shim.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <ctime>

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "actors/containers/signals.hpp"

namespace cyto::containers {

namespace {

using json = nlohmann::json;

int64_t now_unix_nanos() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

void say(const std::string& text) {
  std::fprintf(stderr, "cyto-runtime: %s\n", text.c_str());
}

/// The exit code of a shim that could not create or start: like runc and podman.
int failure_code(const status& s) {
  return s.exit_code() == 126 || s.exit_code() == 127 ? s.exit_code() : 125;
}

struct bundle_files {
  std::string bundle;
  void write(const char* name, const json& j) const {
    // The daemon reads these after a crash too: they go to disk before the rename.
    if (auto s = write_file_atomic(bundle + "/" + name, j.dump(), true))
      say("warning: " + s.render());
  }
};

} // namespace

int run_shim(runtime& rt, const std::string& id, const std::string& bundle) {
  detail::default_dispositions();
  // Blocked before the container exists, so a start or abort sent early is not lost;
  // the container process clears the mask before it execs.
  detail::signal_fd sigs{SIGUSR1, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR2};
  if (!sigs.ok()) {
    say(from_errno(errno, "signalfd").render());
    return 125;
  }
  bundle_files out{bundle};
  // A bundle used before (a restarted container) may hold the last run's answers.
  for (auto* name : {"created.json", "started.json", "exit.json"})
    ::unlink((bundle + "/" + name).c_str());
  create_options co;
  co.bundle = bundle;
  auto pid = rt.create(id, co);
  if (!pid) {
    int code = failure_code(pid.error());
    auto text = pid.error().render();
    say(text);
    out.write("created.json", {{"error", text}, {"exit_code", code}});
    return code;
  }
  out.write("created.json", {{"pid", *pid}, {"start_time", process_start_time(*pid)}});
  int pidfd = detail::open_pidfd(*pid);

  bool exited_early = false;
  for (bool waiting = true; waiting;) {
    pollfd p[2] = {{pidfd, POLLIN, 0}, {sigs.fd(), POLLIN, 0}};
    if (::poll(p, 2, -1) < 0 && errno != EINTR)
      break;
    if (p[0].revents & POLLIN) { // killed before it was started
      exited_early = true;
      break;
    }
    while (int sig = sigs.take()) {
      if (sig == SIGUSR1) {
        waiting = false;
        break;
      }
      if (sig == SIGTERM || sig == SIGINT) {
        if (auto s = rt.remove(id, true))
          say("abort: " + s.render());
        ::waitpid(*pid, nullptr, 0);
        out.write("exit.json", {{"exit_code", 128 + sig},
                                {"signal", sig},
                                {"aborted", true},
                                {"finished_unix_nanos", now_unix_nanos()}});
        return 128 + sig;
      }
    }
  }
  if (!exited_early) {
    auto s = rt.start(id);
    pollfd p{pidfd, POLLIN, 0};
    bool gone = ::poll(&p, 1, 0) > 0;
    if (s && !gone) {
      say(s.render());
      out.write("started.json", {{"error", s.render()}});
      if (auto r = rt.remove(id, true))
        say(r.render());
      ::waitpid(*pid, nullptr, 0);
      return 125;
    }
    if (s)
      say(s.render()); // it was killed meanwhile: exit.json says how
    else
      out.write("started.json", {{"pid", *pid}});
    detail::forward_until_exit(sigs, pidfd, {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR2});
  }
  auto finished = now_unix_nanos();
  auto e = rt.wait_exit(id);
  if (!e) {
    say(e.error().render());
    out.write(
        "exit.json",
        {{"error", e.error().render()}, {"exit_code", 125}, {"finished_unix_nanos", finished}});
    rt.remove(id, true);
    return 125;
  }
  out.write("exit.json",
            {{"exit_code", e->code}, {"signal", e->signal}, {"finished_unix_nanos", finished}});
  if (auto s = rt.remove(id, true))
    say(s.render());
  ::close(pidfd);
  return e->code;
}

namespace {

volatile sig_atomic_t idle_stop = 0;

void on_stop(int) {
  idle_stop = 1;
}

void on_child(int) {}

} // namespace

int run_idle() {
  sigset_t block, none;
  sigemptyset(&block);
  sigemptyset(&none);
  for (int s : {SIGTERM, SIGINT, SIGCHLD})
    sigaddset(&block, s);
  ::sigprocmask(SIG_BLOCK, &block, nullptr);
  struct sigaction sa {};
  sa.sa_handler = on_stop;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  sa.sa_handler = on_child;
  sa.sa_flags = SA_NOCLDSTOP;
  ::sigaction(SIGCHLD, &sa, nullptr);
  while (!idle_stop) {
    ::sigsuspend(&none);
    while (::waitpid(-1, nullptr, WNOHANG) > 0)
      ;
  }
  return 0;
}

} // namespace cyto::containers
