#pragma once
// A real OCI registry for tests: Debian's docker-registry on 127.0.0.1 with its storage
// in a temp dir, images built with umoci from busybox-static and pushed with skopeo,
// and a small loopback HTTP proxy that can demand Bearer tokens (serving the token
// realm itself) or cut one blob response short. Nothing here leaves loopback.

#include <atomic>
#include <mutex>
#include <thread>

#include <netinet/in.h>
#include <arpa/inet.h>

#include "tests/integration/daemon_fixture.hpp"

namespace cyto::test {

inline constexpr const char* busybox_path = "/bin/busybox";

/// A port nobody listens on right now (bind to 0, read it back, close).
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0)
    throw std::runtime_error(std::string{"bind: "} + std::strerror(errno));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

inline int connect_tcp(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

/// Runs a shell script (bounded); throws with its output if it fails.
inline std::string sh(const std::string& script, std::chrono::milliseconds timeout = 60s) {
  auto r = run_process({"/bin/sh", "-ec", script}, timeout);
  if (r.code() != 0)
    throw std::runtime_error("script failed (" + describe_status(r.status) + "): " + script
                             + "\nstdout: " + r.out + "\nstderr: " + r.err);
  return r.out;
}

/// docker-registry on 127.0.0.1:<port>, storage and access log in a temp dir. With
/// `tls`, it serves HTTPS with a certificate for IP 127.0.0.1 signed by a CA of its own
/// (`ca_file()`), made with the openssl CLI.
class registry_fixture {
public:
  explicit registry_fixture(bool tls = false) : port_(free_port()) {
    std::string tls_conf;
    if (tls) {
      auto d = dir_.path();
      sh("cd " + d + " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1"
         " -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=cyto-test-ca 2>/dev/null"
         " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
         " -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 2>/dev/null"
         " && printf 'subjectAltName=IP:127.0.0.1\\n' > ext"
         " && openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
         " -out srv.pem -days 2 -extfile ext 2>/dev/null");
      tls_conf = "  tls:\n    certificate: " + dir_ / "srv.pem" + "\n    key: " + dir_ / "srv.key"
                 + "\n";
    }
    write_text(dir_ / "config.yml",
               "version: 0.1\n"
               "log:\n  level: info\n"
               "storage:\n  filesystem:\n    rootdirectory: " + dir_ / "storage" + "\n"
               "  delete:\n    enabled: true\n"
               "http:\n  addr: 127.0.0.1:" + std::to_string(port_) + "\n" + tls_conf);
    proc_ = std::make_unique<child_process>(
      std::vector<std::string>{"/usr/bin/docker-registry", "serve", dir_ / "config.yml"},
      dir_ / "registry.log");
    auto deadline = steady::now() + 15s;
    while (true) {
      if (auto st = proc_->try_wait())
        throw std::runtime_error("docker-registry exited (" + describe_status(*st)
                                 + "): " + read_text(dir_ / "registry.log"));
      int fd = connect_tcp(port_);
      if (fd >= 0) {
        ::close(fd);
        break;
      }
      if (steady::now() > deadline)
        throw std::runtime_error("docker-registry did not listen within 15 s: "
                                 + read_text(dir_ / "registry.log"));
      std::this_thread::sleep_for(20ms);
    }
  }

  ~registry_fixture() {
    if (proc_ && !proc_->status()) {
      try {
        proc_->kill_and_wait(SIGTERM, 10s);
      } catch (...) {
      }
    }
  }

  int port() const {
    return port_;
  }
  std::string host() const {
    return "127.0.0.1:" + std::to_string(port_);
  }
  const temp_dir& dir() const {
    return dir_;
  }
  std::string storage() const {
    return dir_ / "storage";
  }
  /// The CA that signed a TLS registry's certificate.
  std::string ca_file() const {
    return dir_ / "ca.pem";
  }
  std::string log() const {
    return read_text(dir_ / "registry.log");
  }

  /// GET requests for blobs of `repo` the registry logged so far (its access log).
  int blob_gets(const std::string& repo) const {
    int n = 0;
    for (auto& line : lines_of(read_text(dir_ / "registry.log")))
      if (contains(line, "\"GET /v2/" + repo + "/blobs/sha256:"))
        ++n;
    return n;
  }

  /// Where the registry keeps a blob's bytes.
  std::string blob_file(const std::string& digest) const {
    auto hex = digest.substr(7);
    return storage() + "/docker/registry/v2/blobs/sha256/" + hex.substr(0, 2) + "/" + hex + "/data";
  }

  /// Pushes tag `tag` of OCI layout `layout` to repo:rtag (all platforms of an index).
  void push(const std::string& layout, const std::string& tag, const std::string& repo,
            const std::string& rtag) const {
    // (for a TLS registry skopeo skips verification: the daemon under test must not)
    sh("skopeo copy --all --quiet --dest-tls-verify=false oci:" + layout + ":" + tag
       + " docker://" + host() + "/" + repo + ":" + rtag);
  }

private:
  temp_dir dir_;
  int port_;
  std::unique_ptr<child_process> proc_;
};

/// A loopback HTTP/1.1 proxy in front of a registry (one request per connection).
/// Optionally demands "Authorization: Bearer <token>" on /v2/ and serves the token
/// realm at /token (which wants basic credentials if `basic` is set), or cuts the next
/// blob response after half its body.
class test_proxy {
public:
  explicit test_proxy(int upstream) : upstream_(upstream) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0
        || ::listen(listen_fd_, 64) != 0)
      throw std::runtime_error(std::string{"proxy listen: "} + std::strerror(errno));
    socklen_t len = sizeof(a);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    if (::pipe2(stop_pipe_, O_CLOEXEC) != 0)
      throw std::runtime_error("pipe2");
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~test_proxy() {
    ::write(stop_pipe_[1], "x", 1);
    acceptor_.join();
    std::lock_guard<std::mutex> g{mtx_};
    for (auto& t : workers_)
      t.join();
    ::close(listen_fd_);
    ::close(stop_pipe_[0]);
    ::close(stop_pipe_[1]);
  }

  int port() const {
    return port_;
  }
  std::string host() const {
    return "127.0.0.1:" + std::to_string(port_);
  }

  /// Demand a Bearer token; the token realm wants `basic_b64` (base64 user:pass) if set.
  void require_bearer(std::string token, std::string basic_b64) {
    std::lock_guard<std::mutex> g{mtx_};
    token_ = std::move(token);
    basic_ = std::move(basic_b64);
  }
  /// Demand "Authorization: Basic <basic_b64>" on /v2/ (a Basic challenge, no tokens).
  void require_basic(std::string basic_b64) {
    std::lock_guard<std::mutex> g{mtx_};
    basic_only_ = std::move(basic_b64);
  }
  /// Cut the body of the next blob GET of at least `min_size` bytes after half of it.
  void cut_next_blob(uint64_t min_size) {
    cut_min_ = min_size;
    cut_next_ = true;
  }

  std::atomic<int> token_requests{0};
  std::atomic<int> unauthorized{0};
  std::atomic<int> cut{0};

private:
  void accept_loop() {
    while (true) {
      pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0 && errno != EINTR)
        return;
      if (fds[1].revents)
        return;
      if (!(fds[0].revents & POLLIN))
        continue;
      int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0)
        continue;
      std::lock_guard<std::mutex> g{mtx_};
      workers_.emplace_back([this, c] {
        serve(c);
        ::close(c);
      });
    }
  }

  static bool send_all(int fd, const char* p, size_t n) {
    while (n > 0) {
      auto w = ::send(fd, p, n, MSG_NOSIGNAL);
      if (w <= 0)
        return false;
      p += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }

  static void respond(int fd, const std::string& status, const std::string& extra,
                      const std::string& body) {
    auto text = "HTTP/1.1 " + status + "\r\nContent-Type: application/json\r\nContent-Length: "
                + std::to_string(body.size()) + "\r\nConnection: close\r\n" + extra + "\r\n"
                + body;
    send_all(fd, text.data(), text.size());
  }

  void serve(int c) {
    std::string head;
    char buf[65536];
    while (head.find("\r\n\r\n") == std::string::npos) {
      auto n = ::recv(c, buf, sizeof(buf), 0);
      if (n <= 0)
        return;
      head.append(buf, static_cast<size_t>(n));
    }
    head = head.substr(0, head.find("\r\n\r\n") + 2);
    auto lines = lines_of(head);
    auto request_line = lines.empty() ? "" : lines[0];
    if (!request_line.empty() && request_line.back() == '\r')
      request_line.pop_back();
    auto path = split(request_line, ' ').size() > 1 ? split(request_line, ' ')[1] : "";
    std::string auth, token, basic, basic_only;
    std::string forwarded = request_line + "\r\n";
    for (size_t i = 1; i < lines.size(); ++i) {
      auto l = lines[i];
      if (!l.empty() && l.back() == '\r')
        l.pop_back();
      if (l.empty())
        continue;
      auto colon = l.find(':');
      auto key = l.substr(0, colon);
      for (auto& ch : key)
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (key == "authorization") {
        auth = l.substr(colon + 2);
        continue;
      }
      if (key == "connection")
        continue;
      forwarded += l + "\r\n";
    }
    forwarded += "Connection: close\r\n\r\n";
    {
      std::lock_guard<std::mutex> g{mtx_};
      token = token_;
      basic = basic_;
      basic_only = basic_only_;
    }
    if (!basic_only.empty() && auth != "Basic " + basic_only) {
      ++unauthorized;
      return respond(c, "401 Unauthorized", "WWW-Authenticate: Basic realm=\"cyto-test\"\r\n",
                     R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})");
    }
    if (path.rfind("/token", 0) == 0) {
      ++token_requests;
      if (!basic.empty() && auth != "Basic " + basic)
        return respond(c, "401 Unauthorized", "", R"({"errors":[{"code":"UNAUTHORIZED"}]})");
      return respond(c, "200 OK", "", R"({"token":")" + token + R"("})");
    }
    if (!token.empty() && auth != "Bearer " + token) {
      ++unauthorized;
      return respond(c, "401 Unauthorized",
                     "WWW-Authenticate: Bearer realm=\"http://" + host()
                       + "/token\",service=\"cyto-test\",scope=\"repository:test:pull\"\r\n",
                     R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})");
    }
    bool cut_candidate = path.find("/blobs/") != std::string::npos && cut_next_.load();
    int u = connect_tcp(upstream_);
    if (u < 0)
      return respond(c, "502 Bad Gateway", "", "{}");
    send_all(u, forwarded.data(), forwarded.size());
    std::string resp_head;
    size_t body_limit = SIZE_MAX, body_sent = 0;
    bool head_done = false;
    while (true) {
      auto n = ::recv(u, buf, sizeof(buf), 0);
      if (n <= 0)
        break;
      size_t off = 0, len = static_cast<size_t>(n);
      if (!head_done) {
        resp_head.append(buf, len);
        auto end = resp_head.find("\r\n\r\n");
        if (end == std::string::npos)
          continue;
        head_done = true;
        auto hdr = resp_head.substr(0, end + 4);
        if (cut_candidate) {
          auto lower = hdr;
          for (auto& ch : lower)
            ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
          auto cl = lower.find("content-length:");
          if (cl != std::string::npos) {
            auto size = std::stoull(hdr.substr(cl + 15));
            bool expected = true;
            if (size >= cut_min_ && cut_next_.compare_exchange_strong(expected, false))
              body_limit = size / 2;
          }
        }
        if (!send_all(c, hdr.data(), hdr.size()))
          break;
        std::string rest = resp_head.substr(end + 4);
        std::memcpy(buf, rest.data(), rest.size());
        off = 0;
        len = rest.size();
      }
      auto take = std::min(len, body_limit - body_sent);
      if (take > 0 && !send_all(c, buf + off, take))
        break;
      body_sent += take;
      if (body_sent >= body_limit) {
        ++cut;
        break;
      }
    }
    ::close(u);
  }

  int upstream_;
  int port_ = 0;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::thread acceptor_;
  std::mutex mtx_;
  std::vector<std::thread> workers_;
  std::string token_, basic_, basic_only_;
  std::atomic<bool> cut_next_{false};
  std::atomic<uint64_t> cut_min_{0};
};

} // namespace cyto::test
