#include "actors/containers/shim.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <ctime>

#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "actors/containers/attach.hpp"
#include "actors/containers/fd_passing.hpp"
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

/// Polls the container's pidfd, the signalfd and (when there is one) the attach socket;
/// returns the pollfd results (0: pidfd, 1: signals).
std::vector<pollfd> poll_once(int pidfd, int sigfd, attach_server* attach) {
  std::vector<pollfd> p = {{pidfd, POLLIN, 0}, {sigfd, POLLIN, 0}};
  if (attach)
    attach->fill(p);
  if (::poll(p.data(), p.size(), -1) < 0) {
    for (auto& x : p)
      x.revents = 0;
    return p;
  }
  if (attach)
    attach->serve(p, 2);
  return p;
}

/// The container's stdio before create: a socketpair for the pty master (tty), a pipe for
/// its stdin (-i), both nothing else.
struct container_stdio {
  int console[2] = {-1, -1};
  int stdin_write = -1;
  status open(const shim_options& o) {
    if (o.tty) {
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, console) != 0)
        return from_errno(errno, "socketpair for the console");
    } else if (o.interactive) {
      int p[2];
      if (::pipe2(p, O_CLOEXEC) != 0)
        return from_errno(errno, "pipe for stdin");
      // The container inherits our stdin: the pipe's read end.
      ::dup2(p[0], 0);
      ::close(p[0]);
      stdin_write = p[1];
    }
    return {};
  }
  /// After create: our stdin back to /dev/null (the container holds the pipe).
  void created() {
    if (stdin_write >= 0) {
      int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (null >= 0) {
        ::dup2(null, 0);
        ::close(null);
      }
    }
    if (console[0] >= 0)
      ::close(console[0]);
    console[0] = -1;
  }
};

} // namespace

int run_shim(runtime& rt, const std::string& id, const std::string& bundle,
             const shim_options& options) {
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
  std::unique_ptr<attach_server> attach;
  container_stdio stdio;
  if (options.tty || options.interactive) {
    attach = std::make_unique<attach_server>();
    auto s = attach->listen(bundle + "/" + attach_socket_name);
    if (!s)
      s = stdio.open(options);
    if (s) {
      say(s.render());
      out.write("created.json", {{"error", s.render()}, {"exit_code", 125}});
      return 125;
    }
  }
  create_options co;
  co.bundle = bundle;
  co.console_fd = stdio.console[0];
  auto pid = rt.create(id, co);
  stdio.created();
  if (pid && options.tty) {
    int master = detail::receive_fd(stdio.console[1]);
    ::close(stdio.console[1]);
    if (master < 0) {
      auto text = from_errno(errno, "receive the pty master").render();
      say(text);
      rt.remove(id, true);
      out.write("created.json", {{"error", text}, {"exit_code", 125}});
      return 125;
    }
    attach->set_master(master);
  } else if (stdio.console[1] >= 0) {
    ::close(stdio.console[1]);
  }
  if (stdio.stdin_write >= 0)
    attach->set_stdin(stdio.stdin_write);
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
    auto p = poll_once(pidfd, sigs.fd(), attach.get());
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
    serve_until_exit(attach.get(), sigs, pidfd, {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR2});
  }
  if (attach)
    attach->finish();
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
