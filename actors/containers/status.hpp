#pragma once
// Errors of the OCI runtime library. The runtime is plain C++ (no CAF): it is linked by
// the standalone `cyto-runtime` as well as by the containers actor, so it carries its own
// small error type whose codes are the snake_case names of cyto::errc and which renders
// the same "cyto.<code>: <text>" form users see everywhere else.

#include <optional>
#include <string>
#include <utility>

namespace cyto::containers {

/// An error (or success when `code` is empty): the errc name and what was done to what.
class status {
public:
  status() = default;
  status(std::string code, std::string text) : code_(std::move(code)), text_(std::move(text)) {}

  bool ok() const noexcept {
    return code_.empty();
  }
  explicit operator bool() const noexcept {
    return !ok();
  }
  const std::string& code() const noexcept {
    return code_;
  }
  const std::string& text() const noexcept {
    return text_;
  }
  /// "cyto.<code>: <text>".
  std::string render() const {
    return "cyto." + code_ + ": " + text_;
  }
  /// The exit status a command-line front end should use: 127 for a program that is not
  /// there (like a shell), 126 for one that cannot be executed, 1 otherwise.
  int exit_code() const noexcept {
    return exit_code_;
  }
  status&& with_exit_code(int code) && {
    exit_code_ = code;
    return std::move(*this);
  }

private:
  std::string code_;
  std::string text_;
  int exit_code_ = 1;
};

inline status invalid(std::string text) {
  return {"invalid_argument", std::move(text)};
}

/// "<what>: <strerror(err)>" as the right code for errno `err`.
status from_errno(int err, const std::string& what);

/// A value or an error.
template <class T>
class result {
public:
  result(T value) : value_(std::move(value)) {}
  result(status err) : err_(std::move(err)) {}
  bool ok() const noexcept {
    return err_.ok();
  }
  explicit operator bool() const noexcept {
    return ok();
  }
  T& operator*() {
    return *value_;
  }
  const T& operator*() const {
    return *value_;
  }
  T* operator->() {
    return &*value_;
  }
  const T* operator->() const {
    return &*value_;
  }
  const status& error() const noexcept {
    return err_;
  }

private:
  std::optional<T> value_;
  status err_;
};

} // namespace cyto::containers
