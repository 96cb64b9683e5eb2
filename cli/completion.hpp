#pragma once
// `cyto completion bash|zsh|fish`: shell completion scripts generated from the CLI11
// command tree itself (subcommands, their options and descriptions), so they never drift
// from the verbs the binary has.

#include <functional>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>

namespace cyto::cli {

/// The completion script of `app` for `shell` (bash, zsh or fish); throws
/// std::invalid_argument for another shell.
std::string completion_script(const CLI::App& app, std::string_view shell);

/// Adds the `completion` verb to `app`; it prints completion_script(app, SHELL).
void add_completion_command(CLI::App& app, std::function<int()>& run);

} // namespace cyto::cli
