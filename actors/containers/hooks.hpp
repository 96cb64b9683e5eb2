#pragma once
// runtime-spec hooks: a program run with the container's state on stdin.

#include <string>

#include "actors/containers/oci_spec.hpp"

namespace cyto::containers {

/// Runs one hook and waits for it (killing it at its timeout). A non-zero exit is an
/// error naming the phase ("hooks.prestart: /usr/bin/x exited with status 2").
status run_hook(const oci::hook& hook, const std::string& state_json, const char* phase);

} // namespace cyto::containers
