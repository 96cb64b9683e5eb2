#include "services/attach_relay.hpp"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <kj/debug.h>

#include "bus/attach_frame.hpp"
#include "bus/errc.hpp"
#include "services/errors.hpp"

namespace cyto::services {

namespace {

int connect_attach(const std::string& path) {
  auto slash = path.rfind('/');
  auto dir = slash == std::string::npos ? std::string{"."} : path.substr(0, slash);
  auto name = path.substr(slash == std::string::npos ? 0 : slash + 1);
  kj::AutoCloseFd dfd{::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC)};
  if (dfd.get() < 0)
    fail(errc::unavailable, "attach: open " + dir + ": " + std::strerror(errno) +
                                " (attach works on the container's own node only)");
  auto via = "/proc/self/fd/" + std::to_string(dfd.get()) + "/" + name;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, via.c_str(), via.size() + 1);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    auto err = errno;
    if (fd >= 0)
      ::close(fd);
    fail(errc::unavailable, "attach: connect to " + path + ": " + std::strerror(err));
  }
  return fd;
}

class relay final : public schema::InputStream::Server {
public:
  relay(kj::UnixEventPort& port, int fd, schema::ByteSink::Client output)
    : fd_(fd),
      observer_(port, fd, kj::UnixEventPort::FdObserver::OBSERVE_READ |
                              kj::UnixEventPort::FdObserver::OBSERVE_WRITE),
      output_(kj::mv(output)),
      pump_(pump().eagerlyEvaluate([](kj::Exception&&) {})) {}

  kj::Promise<void> write(WriteContext context) override {
    auto data = context.getParams().getData();
    return send(attach_frame('i', data.begin(), static_cast<uint32_t>(data.size())));
  }

  kj::Promise<void> close(CloseContext) override {
    return send(attach_frame('e', nullptr, 0));
  }

  kj::Promise<void> resize(ResizeContext context) override {
    auto p = context.getParams();
    return send(attach_resize_frame(p.getRows(), p.getCols()));
  }

private:
  /// Socket -> output, in order, waiting for the sink's flow control.
  kj::Promise<void> pump() {
    kj::byte buf[16384];
    for (;;) {
      auto n = ::read(fd_.get(), buf, sizeof(buf));
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && errno == EAGAIN)
        return observer_.whenBecomesReadable().then([this] { return pump(); });
      if (n <= 0)
        return output_.doneRequest().send().ignoreResult();
      auto req = output_.writeRequest();
      req.setData(kj::arrayPtr(buf, static_cast<size_t>(n)));
      return req.send().then([this] { return pump(); });
    }
  }

  /// Frames go out one after another (a write, a resize, a close keep their order).
  kj::Promise<void> send(std::string frame) {
    auto done = queue_.then([this, frame = kj::mv(frame)]() mutable {
                        return write_all(kj::mv(frame), 0);
                      })
                    .fork();
    queue_ = done.addBranch();
    return done.addBranch();
  }

  kj::Promise<void> write_all(std::string frame, size_t at) {
    while (at < frame.size()) {
      auto n = ::send(fd_.get(), frame.data() + at, frame.size() - at, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && errno == EAGAIN)
        return observer_.whenBecomesWritable().then(
            [this, frame = kj::mv(frame), at]() mutable { return write_all(kj::mv(frame), at); });
      if (n < 0)
        fail(errc::unavailable, std::string{"attach: the container's terminal is gone: "} +
                                    std::strerror(errno));
      at += static_cast<size_t>(n);
    }
    return kj::READY_NOW;
  }

  kj::AutoCloseFd fd_;
  kj::UnixEventPort::FdObserver observer_;
  schema::ByteSink::Client output_;
  kj::Promise<void> queue_ = kj::READY_NOW;
  kj::Promise<void> pump_;
};

} // namespace

schema::InputStream::Client attach_relay(kj::UnixEventPort& port, const std::string& path,
                                         schema::ByteSink::Client output) {
  int fd = connect_attach(path);
  return kj::heap<relay>(port, fd, kj::mv(output));
}

} // namespace cyto::services
