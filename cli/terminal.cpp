#include "cli/terminal.hpp"

#include <cctype>
#include <cerrno>
#include <csignal>

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include <kj/async-unix.h>

namespace cyto::cli {

namespace terminal_impl {

/// Puts our stdin in raw mode (tty) and non-blocking, and restores both when destroyed.
class stdin_mode {
public:
  explicit stdin_mode(bool raw) {
    flags_ = ::fcntl(0, F_GETFL);
    if (raw && ::tcgetattr(0, &saved_) == 0) {
      termios t = saved_;
      ::cfmakeraw(&t);
      raw_ = ::tcsetattr(0, TCSANOW, &t) == 0;
    }
    if (flags_ >= 0)
      ::fcntl(0, F_SETFL, flags_ | O_NONBLOCK);
  }
  ~stdin_mode() {
    if (flags_ >= 0)
      ::fcntl(0, F_SETFL, flags_);
    if (raw_)
      ::tcsetattr(0, TCSANOW, &saved_);
  }
  stdin_mode(const stdin_mode&) = delete;
  stdin_mode& operator=(const stdin_mode&) = delete;

private:
  int flags_ = -1;
  termios saved_{};
  bool raw_ = false;
};

/// All of `data` to our stdout, which may share a non-blocking file description with stdin.
void write_stdout(const kj::byte* data, size_t size) {
  while (size > 0) {
    auto n = ::write(1, data, size);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p{1, POLLOUT, 0};
      ::poll(&p, 1, 1000);
      continue;
    }
    if (n <= 0)
      return;
    data += n;
    size -= static_cast<size_t>(n);
  }
}

class stdout_sink final : public schema::ByteSink::Server {
public:
  explicit stdout_sink(kj::Own<kj::PromiseFulfiller<void>> done) : done_(kj::mv(done)) {}
  ~stdout_sink() {
    done_->fulfill();
  }

  kj::Promise<void> write(WriteContext context) override {
    auto data = context.getParams().getData();
    write_stdout(data.begin(), data.size());
    return kj::READY_NOW;
  }

  kj::Promise<void> done(DoneContext) override {
    done_->fulfill();
    return kj::READY_NOW;
  }

private:
  kj::Own<kj::PromiseFulfiller<void>> done_;
};

/// Matches the detach sequence over reads; bytes held while they might start it.
class detach_matcher {
public:
  explicit detach_matcher(std::string keys) : keys_(std::move(keys)) {}
  /// Bytes of `in` to pass on (in `out`); true once the whole sequence was typed.
  bool feed(const kj::byte* in, size_t n, std::string& out) {
    for (size_t i = 0; i < n; ++i) {
      char b = static_cast<char>(in[i]);
      if (keys_.empty()) {
        out.push_back(b);
        continue;
      }
      if (b == keys_[held_]) {
        if (++held_ == keys_.size())
          return true;
        continue;
      }
      out.append(keys_, 0, held_);
      held_ = 0;
      if (b == keys_[0])
        held_ = 1;
      else
        out.push_back(b);
    }
    return false;
  }

private:
  std::string keys_;
  size_t held_ = 0;
};

struct relay_state {
  relay_state(schema::InputStream::Client i, std::string keys,
              kj::Own<kj::PromiseFulfiller<void>> d)
    : input(kj::mv(i)), matcher(std::move(keys)), detached(kj::mv(d)) {}
  schema::InputStream::Client input;
  kj::Own<kj::AsyncInputStream> in;
  detach_matcher matcher;
  kj::Own<kj::PromiseFulfiller<void>> detached;
  kj::byte buf[8192];
};

/// The next bytes of our stdin. A stdin epoll cannot watch (a regular file, /dev/null) is
/// always readable: plain reads, one per turn of the event loop.
kj::Promise<size_t> read_stdin(relay_state& s) {
  if (s.in)
    return s.in->tryRead(s.buf, 1, sizeof(s.buf));
  return kj::evalLater([&s]() -> size_t {
    for (;;) {
      auto n = ::read(0, s.buf, sizeof(s.buf));
      if (n >= 0)
        return static_cast<size_t>(n);
      if (errno != EINTR)
        return 0; // unreadable: the container's stdin ends
    }
  });
}

/// Whether epoll can watch fd 0 (not for regular files and /dev/null: EPERM).
bool stdin_pollable() {
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0)
    return true;
  epoll_event ev{};
  ev.events = EPOLLIN;
  bool ok = ::epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) == 0 || errno != EPERM;
  ::close(ep);
  return ok;
}

kj::Promise<void> pump_stdin(relay_state& s) {
  return read_stdin(s).then([&s](size_t n) -> kj::Promise<void> {
    if (n == 0) {
      // End of our stdin: the container's stdin ends too (a pipe; ignored with a tty).
      return s.input.closeRequest().send().ignoreResult().then([] {
        return kj::Promise<void>(kj::NEVER_DONE);
      });
    }
    std::string out;
    bool detach = s.matcher.feed(s.buf, n, out);
    kj::Promise<void> sent = kj::READY_NOW;
    if (!out.empty()) {
      auto req = s.input.writeRequest();
      req.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(out.data()), out.size()));
      sent = req.send();
    }
    if (detach) {
      s.detached->fulfill();
      return kj::NEVER_DONE;
    }
    return sent.then([&s] { return pump_stdin(s); });
  });
}

void send_size(schema::InputStream::Client& input, kj::TaskSet& tasks) {
  winsize ws{};
  if (::ioctl(0, TIOCGWINSZ, &ws) != 0 || ws.ws_row == 0)
    return;
  auto req = input.resizeRequest();
  req.setRows(ws.ws_row);
  req.setCols(ws.ws_col);
  tasks.add(req.send().ignoreResult());
}

kj::Promise<void> on_winch(client& c, schema::InputStream::Client& input, kj::TaskSet& tasks) {
  return c.io().unixEventPort.onSignal(SIGWINCH).then([&c, &input, &tasks](siginfo_t) {
    send_size(input, tasks);
    return on_winch(c, input, tasks);
  });
}

struct ignore_errors final : kj::TaskSet::ErrorHandler {
  void taskFailed(kj::Exception&&) override {}
};

/// Reads the signalfd `fd` and sends each signal to container `name`.
kj::Promise<void> forward_from(kj::AsyncInputStream& in, schema::Containers::Client svc,
                               std::string name, kj::Own<signalfd_siginfo> info) {
  auto* buf = info.get();
  return in.read(buf, sizeof(*buf))
      .then([&in, svc, name, info = kj::mv(info)]() mutable {
        auto req = svc.killRequest();
        req.setName(name);
        req.setSignal(static_cast<int32_t>(info->ssi_signo));
        // Not running (yet, or any more): nothing to forward to.
        return req.send().ignoreResult().catch_([](kj::Exception&&) {}).then(
            [&in, svc, name, info = kj::mv(info)]() mutable {
              return forward_from(in, svc, name, kj::mv(info));
            });
      });
}

} // namespace terminal_impl

std::string parse_detach_keys(const std::string& text) {
  using namespace terminal_impl;
  std::string out;
  size_t at = 0;
  while (at < text.size()) {
    auto comma = text.find(',', at);
    auto key = text.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    at = comma == std::string::npos ? text.size() : comma + 1;
    if (key.size() == 1) {
      out.push_back(key[0]);
    } else if (key.size() == 6 && key.rfind("ctrl-", 0) == 0) {
      char k = static_cast<char>(std::tolower(static_cast<unsigned char>(key[5])));
      if (k >= 'a' && k <= 'z')
        out.push_back(static_cast<char>(k - 'a' + 1));
      else if (k == '@' || k == '[' || k == '\\' || k == ']' || k == '^' || k == '_')
        out.push_back(static_cast<char>(k == '@' ? 0 : k - '@'));
      else
        throw cli_error("cyto.invalid_argument: --detach-keys: '" + key + "' is not ctrl-[a-z@[\\]^_]");
    } else {
      throw cli_error("cyto.invalid_argument: --detach-keys: '" + key +
                      "' is not a single character or ctrl-<key> (e.g. ctrl-p,ctrl-q)");
    }
  }
  return out;
}

attachment attach(client& c, schema::Containers::Client svc, const std::string& name,
                  const std::string& exec, unsigned retry_ms) {
  using namespace terminal_impl;
  for (unsigned waited = 0;; waited += 20) {
    auto pf = kj::newPromiseAndFulfiller<void>();
    auto req = svc.attachRequest();
    req.setName(name);
    req.setExec(exec);
    req.setOutput(kj::heap<stdout_sink>(kj::mv(pf.fulfiller)));
    try {
      auto resp = req.send().wait(c.wait_scope());
      return {resp.getInput(), kj::mv(pf.promise)};
    } catch (const kj::Exception& e) {
      auto text = describe(e);
      if (waited >= retry_ms || text.rfind("cyto.unavailable", 0) != 0)
        throw cli_error(text);
    }
    c.io().provider->getTimer().afterDelay(20 * kj::MILLISECONDS).wait(c.wait_scope());
  }
}

bool relay_terminal(client& c, schema::InputStream::Client input, const terminal_options& o,
                    kj::Promise<void> finished) {
  using namespace terminal_impl;
  ::signal(SIGPIPE, SIG_IGN);
  kj::UnixEventPort::captureSignal(SIGWINCH);
  ignore_errors handler;
  kj::TaskSet tasks{handler};
  std::optional<stdin_mode> mode;
  if (o.interactive || o.tty)
    mode.emplace(o.tty && o.interactive && ::isatty(0)); // -t alone: ^C stays a signal here
  if (o.tty)
    send_size(input, tasks);
  auto pf = kj::newPromiseAndFulfiller<void>();
  auto state = kj::heap<relay_state>(input, o.detach_keys, kj::mv(pf.fulfiller));
  if (o.interactive && stdin_pollable())
    state->in = c.io().lowLevelProvider->wrapInputFd(
        0, kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK |
               kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC);
  bool detached = false;
  auto detach = pf.promise.then([&detached] { detached = true; });
  kj::Promise<void> reading = kj::NEVER_DONE;
  if (o.interactive)
    reading = pump_stdin(*state).catch_([](kj::Exception&&) -> kj::Promise<void> {
      return kj::NEVER_DONE; // stdin unreadable: the container still runs to its end
    });
  auto winch = o.tty ? on_winch(c, input, tasks) : kj::Promise<void>(kj::NEVER_DONE);
  try {
    finished.exclusiveJoin(kj::mv(detach))
        .exclusiveJoin(kj::mv(reading))
        .exclusiveJoin(kj::mv(winch))
        .wait(c.wait_scope());
  } catch (const kj::Exception& e) {
    mode.reset();
    throw cli_error(describe(e));
  }
  return detached;
}

kj::Promise<void> forward_signals(client& c, schema::Containers::Client svc,
                                  const std::string& name) {
  using namespace terminal_impl;
  // Our own signalfd (blocked signals, read on the kj loop): nothing is lost between
  // two reads and no handler runs.
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT})
    sigaddset(&set, sig);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0)
    return kj::NEVER_DONE;
  auto in = c.io().lowLevelProvider->wrapInputFd(
      fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
              kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK |
              kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC);
  auto& ref = *in;
  return forward_from(ref, svc, name, kj::heap<signalfd_siginfo>()).attach(kj::mv(in));
}

void wait_briefly(client& c, kj::Promise<void> p, unsigned ms) {
  using namespace terminal_impl;
  try {
    p.exclusiveJoin(c.io().provider->getTimer().afterDelay(ms * kj::MILLISECONDS))
        .wait(c.wait_scope());
  } catch (const kj::Exception&) {
  }
}

} // namespace cyto::cli
