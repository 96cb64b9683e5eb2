// bench_common.hpp: helpers shared by the benchmark programs (rpc_bench, cells_bench).
//
// Header-only. Each program defines `cyto::bench::bench_name` (its name, used as the
// prefix of progress lines and of its temp dir) and brings this namespace into scope.

#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <numeric>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <sys/socket.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <capnp/common.h>
#include <kj/exception.h>
#include <kj/time.h>

namespace cyto::bench {

/// The program's name ("rpc_bench", ...): defined once by each benchmark program.
extern const char* const bench_name;

using steady = std::chrono::steady_clock;

inline double seconds_between(steady::time_point a, steady::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

inline double micros_between(steady::time_point a, steady::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

inline void sleep_s(double s) {
  std::this_thread::sleep_for(std::chrono::duration<double>(s));
}

inline kj::Duration kj_duration(double seconds) {
  return static_cast<int64_t>(seconds * 1e3) * kj::MILLISECONDS;
}

/// A progress line on stderr: "[<bench_name>] ...".
inline void note(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline void note(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "[%s] %s\n", bench_name, buf);
  std::fflush(stderr);
}

inline std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

inline std::string describe_status(int status) {
  if (WIFEXITED(status))
    return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return std::string{"signal "} + strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

inline std::string describe_exception(const std::exception& e) {
  if (auto* k = dynamic_cast<const kj::Exception*>(&e))
    return k->getDescription().cStr(); // without kj's stack addresses
  return e.what();
}

// -- a small JSON value, keys kept in insertion order ---------------------------------

class json {
public:
  using object = std::vector<std::pair<std::string, json>>;
  using array = std::vector<json>;

  json() = default;
  json(std::nullptr_t) {
  }
  json(bool b) : v_(b) {
  }
  template <class T>
    requires(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>)
  json(T x) {
    if constexpr (std::is_integral_v<T>)
      v_ = static_cast<int64_t>(x);
    else
      v_ = static_cast<double>(x);
  }
  json(const char* s) : v_(std::string{s}) {
  }
  json(std::string s) : v_(std::move(s)) {
  }
  json(array a) : v_(std::move(a)) {
  }

  static json obj() {
    json j;
    j.v_ = object{};
    return j;
  }

  /// Object member access; inserts a null member (and turns a null value into an object).
  json& operator[](const std::string& key) {
    if (std::holds_alternative<std::nullptr_t>(v_))
      v_ = object{};
    auto& o = std::get<object>(v_);
    for (auto& [k, val] : o)
      if (k == key)
        return val;
    o.emplace_back(key, json{});
    return o.back().second;
  }

  const json* find(const std::string& key) const {
    if (auto* o = std::get_if<object>(&v_))
      for (auto& [k, val] : *o)
        if (k == key)
          return &val;
    return nullptr;
  }

  const array* as_array() const {
    return std::get_if<array>(&v_);
  }

  std::optional<double> number() const {
    if (auto* d = std::get_if<double>(&v_))
      return *d;
    if (auto* i = std::get_if<int64_t>(&v_))
      return static_cast<double>(*i);
    return std::nullopt;
  }

  std::string dump() const {
    std::string out;
    write(out, 0);
    out += '\n';
    return out;
  }

private:
  static void indent(std::string& out, int level) {
    out += '\n';
    out.append(static_cast<size_t>(level) * 2, ' ');
  }

  static void quote(std::string& out, const std::string& s) {
    out += '"';
    for (unsigned char c : s) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof(buf), "\\u%04x", c);
            out += buf;
          } else {
            out += static_cast<char>(c);
          }
      }
    }
    out += '"';
  }

  void write(std::string& out, int level) const {
    if (std::holds_alternative<std::nullptr_t>(v_)) {
      out += "null";
    } else if (auto* b = std::get_if<bool>(&v_)) {
      out += *b ? "true" : "false";
    } else if (auto* i = std::get_if<int64_t>(&v_)) {
      out += std::to_string(*i);
    } else if (auto* d = std::get_if<double>(&v_)) {
      if (!std::isfinite(*d)) {
        out += "null";
      } else {
        char buf[64];
        std::snprintf(buf, sizeof(buf), std::fabs(*d) >= 1000 ? "%.1f" : "%.3f", *d);
        out += buf;
      }
    } else if (auto* s = std::get_if<std::string>(&v_)) {
      quote(out, *s);
    } else if (auto* a = std::get_if<array>(&v_)) {
      out += '[';
      for (size_t k = 0; k < a->size(); ++k) {
        out += k ? ", " : "";
        (*a)[k].write(out, level + 1);
      }
      out += ']';
    } else {
      auto& o = std::get<object>(v_);
      out += '{';
      for (size_t k = 0; k < o.size(); ++k) {
        out += k ? "," : "";
        indent(out, level + 1);
        quote(out, o[k].first);
        out += ": ";
        o[k].second.write(out, level + 1);
      }
      if (!o.empty())
        indent(out, level);
      out += '}';
    }
  }

  std::variant<std::nullptr_t, bool, int64_t, double, std::string, object, array> v_;
};

inline json optional_number(std::optional<int64_t> v) {
  return v ? json{*v} : json{nullptr};
}

// -- statistics ------------------------------------------------------------------------

inline json latency_stats(std::vector<double> us) {
  json j = json::obj();
  j["count"] = us.size();
  if (us.empty())
    return j;
  std::sort(us.begin(), us.end());
  auto pct = [&](double p) {
    auto rank = static_cast<size_t>(std::ceil(p * static_cast<double>(us.size())));
    return us[std::clamp<size_t>(rank, 1, us.size()) - 1];
  };
  j["min"] = us.front();
  j["p50"] = pct(0.50);
  j["p90"] = pct(0.90);
  j["p99"] = pct(0.99);
  j["max"] = us.back();
  j["mean"] = std::accumulate(us.begin(), us.end(), 0.0) / static_cast<double>(us.size());
  return j;
}

inline double median(std::vector<double> v) {
  if (v.empty())
    return NAN;
  std::sort(v.begin(), v.end());
  auto n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// -- /proc -----------------------------------------------------------------------------

inline std::string read_text(const std::string& path) {
  std::ifstream in{path};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// A "Key:   value ..." line of /proc/PID/status, as a number (kB for memory fields).
inline std::optional<int64_t> status_field(pid_t pid, const std::string& key) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0)
      return std::strtoll(line.c_str() + key.size() + 1, nullptr, 10);
  return std::nullopt;
}

inline double loadavg_1m() {
  double v = -1;
  std::ifstream in{"/proc/loadavg"};
  in >> v;
  return v;
}

/// The start of the "machine" object: nproc, kernel_release, [kernel_version,] arch,
/// cpu_model.
inline json machine_info_head(bool with_kernel_version) {
  json j = json::obj();
  j["nproc"] = ::sysconf(_SC_NPROCESSORS_ONLN);
  utsname u{};
  ::uname(&u);
  j["kernel_release"] = std::string{u.release};
  if (with_kernel_version)
    j["kernel_version"] = std::string{u.version};
  j["arch"] = std::string{u.machine};
  std::ifstream cpuinfo{"/proc/cpuinfo"};
  std::string line;
  while (std::getline(cpuinfo, line))
    if (line.rfind("model name", 0) == 0) {
      auto v = line.substr(line.find(':') + 1);
      v.erase(0, v.find_first_not_of(' '));
      j["cpu_model"] = v;
      break;
    }
  return j;
}

/// The end of the "machine" object: capnp_version, loadavg_1m_at_start.
inline void machine_info_tail(json& j) {
  j["capnp_version"] = std::to_string(CAPNP_VERSION_MAJOR) + "."
                       + std::to_string(CAPNP_VERSION_MINOR) + "."
                       + std::to_string(CAPNP_VERSION_MICRO);
  j["loadavg_1m_at_start"] = loadavg_1m();
}

// -- signals and the temp dir ----------------------------------------------------------

/// The temp dir's path, in a fixed buffer so that a signal handler can remove it.
inline char g_tmpdir[256] = {};

/// Only async-signal-safe calls: usable from a signal handler.
inline void write_stderr(const char* s) {
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, s, std::strlen(s));
}

/// `on_signal` for SIGINT, SIGTERM, SIGHUP and SIGALRM, `on_terminate` for
/// std::terminate; SIGPIPE is ignored.
inline void install_handlers(void (*on_signal)(int), void (*on_terminate)()) {
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGALRM})
    ::sigaction(sig, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  std::set_terminate(on_terminate);
}

/// A new private dir "$TMPDIR/<bench_name>.XXXXXX" (or under /tmp), kept in g_tmpdir.
inline std::string make_tmpdir() {
  std::string base = "/tmp";
  if (const char* t = std::getenv("TMPDIR"); t && *t == '/' && std::strlen(t) < 48)
    base = t;
  std::string templ = base + "/" + bench_name + ".XXXXXX";
  if (!::mkdtemp(templ.data()))
    throw std::runtime_error(errno_text("mkdtemp " + templ));
  std::snprintf(g_tmpdir, sizeof(g_tmpdir), "%s", templ.c_str());
  return templ;
}

// -- unix sockets ----------------------------------------------------------------------

inline sockaddr_un unix_address(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path))
    throw std::runtime_error("socket path too long: " + path);
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  return addr;
}

/// Connects to `path`; returns -1 (errno set) if nothing listens there.
inline int try_connect_unix(const std::string& path) {
  auto addr = unix_address(path);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    ::close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

} // namespace cyto::bench
