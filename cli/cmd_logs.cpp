// cyto logs --daemon [-f] [--level L] [--tail N] (CELL/EXE: cmd_observe.cpp)
#include <cstdio>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "schema/observe.capnp.h"

namespace cyto::cli {

namespace cmd_logs_impl {

constexpr const char* level_names[] = {"trace", "debug", "info", "warn", "error", "critical"};

/// The client side of the stream: prints what the daemon pushes.
class printing_sink final : public schema::LogSink::Server {
public:
  explicit printing_sink(bool json) : json_(json) {
  }

  kj::Promise<void> line(LineContext context) override {
    auto e = context.getParams().getEntry();
    auto lvl = static_cast<size_t>(e.getLevel());
    const char* level = lvl < std::size(level_names) ? level_names[lvl] : "unknown";
    if (json_) {
      print_json({{"time", iso_time(e.getUnixNanos())},
                  {"unixNanos", e.getUnixNanos()},
                  {"level", level},
                  {"logger", e.getLogger().cStr()},
                  {"message", e.getMessage().cStr()},
                  {"seq", e.getSeq()}});
    } else {
      std::printf("%s %-5s %s: %s\n", iso_time(e.getUnixNanos()).c_str(), level,
                  e.getLogger().cStr(), e.getMessage().cStr());
      std::fflush(stdout);
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> dropped(DroppedContext context) override {
    auto n = context.getParams().getCount();
    if (json_)
      print_json({{"dropped", n}});
    else
      std::printf("-- %llu entries dropped (this reader fell behind) --\n",
                  static_cast<unsigned long long>(n));
    return kj::READY_NOW;
  }

private:
  bool json_;
};

} // namespace cmd_logs_impl

int cmd_logs(const global_options& g, const logs_options& o) {
  using namespace cmd_logs_impl;
  if (!o.daemon && !o.target.empty())
    return cmd_workload_logs(g, o);
  if (!o.daemon || !o.target.empty())
    throw cli_error("cyto.invalid_argument: logs: give either --daemon or CELL/EXECUTABLE");
  if (!o.since.empty() || !o.until.empty() || o.timestamps)
    throw cli_error("cyto.invalid_argument: logs: --since, --until and --timestamps are for "
                    "a container's or an executable's output (the daemon's log has its times)");
  size_t level = 0;
  while (level < std::size(level_names) && o.level != level_names[level])
    ++level;
  if (level == std::size(level_names))
    throw cli_error("cyto.invalid_argument: --level must be one of trace, debug, info, warn, "
                    "error, critical; got '" + o.level + "'");
  client c{g};
  auto observe = wait(c, c.node().observeRequest().send()).getService();
  auto req = observe.daemonLogsRequest();
  req.setLevel(static_cast<schema::LogLevel>(level));
  req.setFollow(o.follow);
  req.setTail(o.tail.value_or(100));
  req.setSink(kj::heap<printing_sink>(g.json));
  wait(c, req.send().ignoreResult());
  return 0;
}

} // namespace cyto::cli
