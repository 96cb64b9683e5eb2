#include "actors/containers/hooks.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace cyto::containers {

status run_hook(const oci::hook& h, const std::string& state, const char* phase) {
  auto where = std::string{"hooks."} + phase + ": " + h.path;
  int in[2];
  if (::pipe2(in, O_CLOEXEC) != 0)
    return from_errno(errno, where + ": pipe");
  std::vector<char*> argv, envp;
  std::vector<std::string> args = h.args.empty() ? std::vector<std::string>{h.path} : h.args;
  for (auto& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& e : h.env)
    envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    ::close(in[0]);
    ::close(in[1]);
    return from_errno(err, where + ": fork");
  }
  if (pid == 0) {
    ::dup2(in[0], 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(h.path.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(in[0]);
  // A hook that does not read its stdin must not block us: ignore EPIPE.
  auto old = ::signal(SIGPIPE, SIG_IGN);
  size_t off = 0;
  while (off < state.size()) {
    auto n = ::write(in[1], state.data() + off, state.size() - off);
    if (n <= 0)
      break;
    off += static_cast<size_t>(n);
  }
  ::close(in[1]);
  ::signal(SIGPIPE, old);
  int status_code = 0;
  if (h.timeout) {
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    pollfd p{pidfd, POLLIN, 0};
    int rc = pidfd >= 0 ? ::poll(&p, 1, *h.timeout * 1000) : 1;
    if (pidfd >= 0)
      ::close(pidfd);
    if (rc == 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      return {"timeout", where + ": still running after " + std::to_string(*h.timeout)
                           + "s (killed)"};
    }
  }
  while (::waitpid(pid, &status_code, 0) < 0 && errno == EINTR)
    ;
  if (WIFEXITED(status_code) && WEXITSTATUS(status_code) == 0)
    return {};
  if (WIFEXITED(status_code))
    return {"failed_precondition",
            where + ": exited with status " + std::to_string(WEXITSTATUS(status_code))};
  return {"failed_precondition",
          where + ": killed by signal " + std::to_string(WTERMSIG(status_code))};
}

} // namespace cyto::containers
