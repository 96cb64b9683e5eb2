#pragma once
// The CLI's side of -i/-t (run, attach, exec): raw mode on our terminal, stdin and
// window sizes to the container's InputStream, its terminal's bytes to our stdout,
// detach keys, and signals forwarded to a foreground container.

#include <optional>
#include <string>

#include "cli/client.hpp"
#include "schema/containers.capnp.h"

namespace cyto::cli {

/// "ctrl-p,ctrl-q" (podman's default), "ctrl-a,d", "" (none) -> the bytes; cli_error when
/// malformed.
std::string parse_detach_keys(const std::string& text);

struct terminal_options {
  /// The container has a terminal: raw mode here, its output comes through attach.
  bool tty = false;
  /// Our stdin goes to it (EOF closes its stdin).
  bool interactive = false;
  /// The bytes that detach (empty: none); only with interactive.
  std::string detach_keys;
};

/// An attached container: where its stdin goes, and a promise for the end of its
/// terminal's output.
struct attachment {
  schema::InputStream::Client input;
  kj::Promise<void> output_done;
};

/// Containers.attach on `name` (or its exec process `exec`); its terminal's bytes go to
/// our stdout. An exec's socket appears once its process runs: `retry_ms` waits for it.
attachment attach(client& c, schema::Containers::Client svc, const std::string& name,
                  const std::string& exec = {}, unsigned retry_ms = 0);

/// Relays our stdin (raw with `tty`; the terminal is restored on every way out) and window
/// size to `input` until `finished` resolves or the detach keys are typed. Returns true
/// when detached.
bool relay_terminal(client& c, schema::InputStream::Client input, const terminal_options& o,
                    kj::Promise<void> finished);

/// Until dropped: SIGINT, SIGTERM, SIGHUP and SIGQUIT we get are sent to container `name`
/// (podman's --sig-proxy), not acted on here.
kj::Promise<void> forward_signals(client& c, schema::Containers::Client svc,
                                  const std::string& name);

/// Waits up to `ms` for `p` (the last bytes of a terminal after its container stopped).
void wait_briefly(client& c, kj::Promise<void> p, unsigned ms = 2000);

} // namespace cyto::cli
