#pragma once
// The attach socket of a container started with -t or -i: `<bundle>/attach.sock`, served
// by its shim (one poll loop, no threads). cytod's gateway connects to it for
// Containers.attach and relays bytes to and from its client.
//
//   shim -> client  the raw bytes the pty master gives (tty only; else nothing), then EOF
//                   once the container has exited and its last output was sent.
//   client -> shim  frames (bus/attach_frame.hpp): 1 type byte, 4 bytes length (little endian), payload:
//                     'i' input bytes for the container's stdin (the pty or a pipe)
//                     'e' end of input: the pipe is closed (EOF); with a tty, ignored
//                     'w' window size: rows, cols (2 bytes each, little endian)
//
// The master's output also goes to the shim's stdout (the container's log), attached or
// not, so a container with a terminal never blocks on output nobody reads.

#include <cstdint>
#include <string>
#include <vector>

#include <poll.h>

#include <initializer_list>

#include "actors/containers/signals.hpp"
#include "actors/containers/status.hpp"

namespace cyto::containers {

/// The socket's name in the bundle.
constexpr const char* attach_socket_name = "attach.sock";

class attach_server {
public:
  attach_server() = default;
  ~attach_server();
  attach_server(const attach_server&) = delete;
  attach_server& operator=(const attach_server&) = delete;

  /// Listens on `path` (bound through /proc/self/fd, so it may be longer than sun_path).
  /// Mode 0600: only root, like the bundle.
  status listen(const std::string& path);
  /// Waits up to `ms` for a first client (exec -i/-t: its process starts attached);
  /// then the path is removed (nobody else attaches to it).
  status wait_first_client(int ms);
  /// The pty master (tty); input goes there and its output is relayed. Takes ownership.
  void set_master(int fd);
  /// The write end of the container's stdin pipe (-i without -t). Takes ownership.
  void set_stdin(int fd);

  /// Appends the fds to poll; call serve() with the same vector and the index of the
  /// first one afterwards.
  void fill(std::vector<pollfd>& fds) const;
  void serve(const std::vector<pollfd>& fds, size_t first);
  /// The container has exited: its last output is relayed, then every client gets EOF
  /// and the socket is removed.
  void finish();

private:
  struct client {
    int fd = -1;
    std::string in; // bytes of an incomplete frame
  };
  void accept_one();
  /// Reads a client's frames; false once it has gone.
  bool read_client(client& c);
  void handle_frame(char type, const std::string& payload);
  void relay_output();
  void flush_input();
  void close_stdin();

  std::string path_;
  int listen_fd_ = -1;
  int master_ = -1;
  bool master_hung_up_ = false;
  int stdin_ = -1;
  /// Input not yet taken by the pty or pipe (full): clients are not read meanwhile.
  std::string pending_;
  /// 'e' arrived: the pipe closes once pending_ is written.
  bool close_after_ = false;
  std::vector<client> clients_;
};

/// Until the process behind `pidfd` has exited: serves `attach` (if any) and sends the
/// signals in `forward` that arrive on `sigs` to it (others are dropped).
void serve_until_exit(attach_server* attach, const detail::signal_fd& sigs, int pidfd,
                      std::initializer_list<int> forward);

} // namespace cyto::containers
