#include "bus/logging.hpp"

#include <mutex>

namespace cyto::log {

namespace {

std::mutex mtx;
std::vector<spdlog::sink_ptr> shared_sinks;
spdlog::level::level_enum shared_level = spdlog::level::info;

} // namespace

void init(std::vector<spdlog::sink_ptr> sinks, spdlog::level::level_enum level) {
  std::lock_guard guard{mtx};
  shared_sinks = std::move(sinks);
  shared_level = level;
  spdlog::apply_all([](std::shared_ptr<spdlog::logger> l) {
    l->sinks() = shared_sinks;
    l->set_level(shared_level);
  });
  auto def = std::make_shared<spdlog::logger>("cytod", shared_sinks.begin(), shared_sinks.end());
  def->set_level(level);
  spdlog::set_default_logger(def);
}

std::shared_ptr<spdlog::logger> get(const std::string& name) {
  std::lock_guard guard{mtx};
  if (auto l = spdlog::get(name))
    return l;
  auto l = std::make_shared<spdlog::logger>(name, shared_sinks.begin(), shared_sinks.end());
  l->set_level(shared_level);
  spdlog::register_logger(l);
  return l;
}

spdlog::level::level_enum to_spdlog(log_level x) noexcept {
  switch (x) {
    case log_level::trace: return spdlog::level::trace;
    case log_level::debug: return spdlog::level::debug;
    case log_level::info: return spdlog::level::info;
    case log_level::warn: return spdlog::level::warn;
    case log_level::error: return spdlog::level::err;
    case log_level::critical: return spdlog::level::critical;
  }
  return spdlog::level::info;
}

log_level from_spdlog(spdlog::level::level_enum x) noexcept {
  switch (x) {
    case spdlog::level::trace: return log_level::trace;
    case spdlog::level::debug: return log_level::debug;
    case spdlog::level::info: return log_level::info;
    case spdlog::level::warn: return log_level::warn;
    case spdlog::level::err: return log_level::error;
    default: return log_level::critical;
  }
}

std::optional<log_level> parse_level(std::string_view text) noexcept {
  if (text == "trace") return log_level::trace;
  if (text == "debug") return log_level::debug;
  if (text == "info") return log_level::info;
  if (text == "warn" || text == "warning") return log_level::warn;
  if (text == "error" || text == "err") return log_level::error;
  if (text == "critical") return log_level::critical;
  return std::nullopt;
}

} // namespace cyto::log
