#include "actors/vms/qmp.hpp"

#include <cerrno>
#include <cstring>
#include <thread>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "bus/errc.hpp"

namespace cyto::vms {

namespace {

using nlohmann::json;
using clock = std::chrono::steady_clock;

/// QMP lines are small; anything this long is not QEMU talking.
constexpr size_t max_line = 16u << 20;

caf::error closed() {
  return make_error(errc::unavailable, "QMP connection closed");
}

} // namespace

caf::expected<qmp_message> parse_qmp(std::string_view line) {
  auto j = json::parse(line, nullptr, false);
  if (!j.is_object())
    return make_error(errc::invalid_argument, "QMP: not a JSON object: " + std::string{line});
  qmp_message m;
  if (auto i = j.find("id"); i != j.end() && i->is_number_integer())
    m.id = i->get<int64_t>();
  if (j.contains("QMP")) {
    m.type = qmp_message::kind::greeting;
    m.data = j["QMP"];
  } else if (j.contains("return")) {
    m.type = qmp_message::kind::reply;
    m.data = j["return"];
  } else if (auto e = j.find("error"); e != j.end() && e->is_object()) {
    m.type = qmp_message::kind::error;
    m.name = e->value("class", std::string{"GenericError"});
    m.data = e->value("desc", std::string{});
  } else if (auto ev = j.find("event"); ev != j.end() && ev->is_string()) {
    m.type = qmp_message::kind::event;
    m.name = ev->get<std::string>();
    m.data = j.value("data", json::object());
  } else {
    return make_error(errc::invalid_argument, "QMP: unknown message: " + std::string{line});
  }
  return m;
}

std::string qmp_command(std::string_view execute, const json& arguments, uint64_t id) {
  json j{{"execute", execute}, {"id", id}};
  if (!arguments.is_null())
    j["arguments"] = arguments;
  return j.dump() + "\n";
}

caf::expected<qmp_client> qmp_client::connect(const std::string& path,
                                              std::chrono::milliseconds timeout,
                                              const std::function<bool()>& alive) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path))
    return make_error(errc::invalid_argument, "QMP socket path too long: " + path);
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  auto deadline = clock::now() + timeout;
  std::string last = "not tried";
  for (auto pause = std::chrono::milliseconds{2};; pause = std::min(pause * 2, std::chrono::milliseconds{50})) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
      return make_error(errc::internal, std::string{"socket: "} + std::strerror(errno));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      qmp_client c{fd};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
      if (auto err = c.handshake(std::max(left, std::chrono::milliseconds{1000})))
        return err;
      return c;
    }
    last = std::strerror(errno);
    ::close(fd);
    if (clock::now() >= deadline)
      return make_error(errc::unavailable, "QMP socket " + path + ": no answer in " +
                                               std::to_string(timeout.count()) + " ms (" + last +
                                               ")");
    if (alive && !alive())
      return make_error(errc::unavailable, "QEMU exited before its QMP socket " + path +
                                               " answered (" + last + ")");
    std::this_thread::sleep_for(pause);
  }
}

caf::expected<qmp_client> qmp_client::adopt(int fd, std::chrono::milliseconds timeout) {
  qmp_client c{fd};
  if (auto err = c.handshake(timeout))
    return err;
  return c;
}

qmp_client::qmp_client(qmp_client&& other) noexcept
  : fd_(std::exchange(other.fd_, -1)),
    next_id_(other.next_id_),
    buffer_(std::move(other.buffer_)),
    version_(std::move(other.version_)) {
}

qmp_client& qmp_client::operator=(qmp_client&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    next_id_ = other.next_id_;
    buffer_ = std::move(other.buffer_);
    version_ = std::move(other.version_);
  }
  return *this;
}

qmp_client::~qmp_client() {
  if (fd_ >= 0)
    ::close(fd_);
}

caf::error qmp_client::handshake(std::chrono::milliseconds timeout) {
  auto greeting = read(timeout);
  if (!greeting)
    return make_error(errc::unavailable,
                      "QMP greeting: " + context_of(greeting.error()));
  if (greeting->type != qmp_message::kind::greeting)
    return make_error(errc::internal, "QMP: the first message is no greeting");
  if (auto v = greeting->data.find("version"); v != greeting->data.end() && v->contains("qemu")) {
    auto& q = (*v)["qemu"];
    version_ = std::to_string(q.value("major", 0)) + "." + std::to_string(q.value("minor", 0)) +
               "." + std::to_string(q.value("micro", 0));
  }
  auto r = execute("qmp_capabilities", nullptr, {}, timeout);
  if (!r)
    return make_error(code_of(r.error()), "QMP capabilities: " + context_of(r.error()));
  return {};
}

caf::expected<uint64_t> qmp_client::send(std::string_view execute, const json& arguments) {
  auto id = next_id_++;
  auto line = qmp_command(execute, arguments, id);
  size_t done = 0;
  while (done < line.size()) {
    auto n = ::send(fd_, line.data() + done, line.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return make_error(errc::unavailable,
                        "QMP send " + std::string{execute} + ": " + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  return id;
}

caf::expected<qmp_message> qmp_client::read(std::chrono::milliseconds timeout) {
  auto deadline = clock::now() + timeout;
  for (;;) {
    if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
      auto line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (line.find_first_not_of(" \r\t") == std::string::npos)
        continue;
      return parse_qmp(line);
    }
    if (buffer_.size() > max_line)
      return make_error(errc::internal, "QMP: line longer than 16 MiB");
    if (timeout.count() > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
      if (left.count() <= 0)
        return make_error(errc::timeout, "QMP: no message in " + std::to_string(timeout.count()) +
                                             " ms");
      pollfd p{fd_, POLLIN, 0};
      int rc = ::poll(&p, 1, static_cast<int>(left.count()));
      if (rc < 0 && errno == EINTR)
        continue;
      if (rc == 0)
        continue;
    }
    char buf[4096];
    auto n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return closed();
    buffer_.append(buf, static_cast<size_t>(n));
  }
}

caf::expected<json> qmp_client::execute(std::string_view execute, const json& arguments,
                                        const std::function<void(qmp_message&)>& on_event,
                                        std::chrono::milliseconds timeout) {
  auto id = send(execute, arguments);
  if (!id)
    return id.error();
  for (;;) {
    auto m = read(timeout);
    if (!m)
      return m.error();
    if (m->type == qmp_message::kind::event) {
      if (on_event)
        on_event(*m);
      continue;
    }
    if (m->id != static_cast<int64_t>(*id))
      continue; // an answer to a command someone else gave up on
    if (m->type == qmp_message::kind::error)
      return make_error(errc::invalid_argument, "QMP " + std::string{execute} + ": " + m->name +
                                                    ": " + m->data.get<std::string>());
    return std::move(m->data);
  }
}

void qmp_client::shutdown() noexcept {
  if (fd_ >= 0)
    ::shutdown(fd_, SHUT_RDWR);
}

} // namespace cyto::vms
