#include "actors/observe/resolver.hpp"

#include <cstring>
#include <filesystem>
#include <string_view>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace cyto::observe {

namespace {

/// Reads a small /proc file in one go (no iostreams: this is on the event path).
bool slurp(const std::string& path, std::string& out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  char buf[4096];
  out.clear();
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0)
    out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return !out.empty();
}

/// The last number on the line starting with `key` ("NSpid:\t123\t1" -> 1).
uint32_t last_number(std::string_view text, std::string_view key) {
  auto at = text.find(key);
  if (at == std::string_view::npos || (at != 0 && text[at - 1] != '\n'))
    return 0;
  auto end = text.find('\n', at);
  auto line = text.substr(at + key.size(),
                          end == std::string_view::npos ? text.npos : end - at - key.size());
  uint32_t v = 0;
  bool in_number = false;
  for (char c : line) {
    bool digit = c >= '0' && c <= '9';
    if (digit)
      v = (in_number ? v * 10 : 0) + static_cast<uint32_t>(c - '0');
    in_number = digit;
  }
  return v;
}

std::string fixed(const char* s, size_t n) {
  return std::string{s, ::strnlen(s, n)};
}

} // namespace

pid_resolver::pid_resolver(std::string cgroup_root, std::string proc, size_t max_entries,
                           std::string cgroup_mount)
    : root_(std::move(cgroup_root)), proc_(std::move(proc)), max_entries_(max_entries),
      mount_(std::move(cgroup_mount)) {}

void pid_resolver::scan_cgroup_ids() {
  ++counters_.id_scans;
  namespace fs = std::filesystem;
  auto walk = [&](const fs::path& top, std::unordered_map<uint64_t, std::string>& ids) {
    if (ids.size() >= max_entries_)
      ids.clear();
    std::error_code ec;
    fs::recursive_directory_iterator it{top, ec}, end;
    for (; !ec && it != end; it.increment(ec)) {
      if (!it->is_directory(ec))
        continue;
      struct stat st{};
      if (::stat(it->path().c_str(), &st) != 0)
        continue;
      // <top>/<cell...>/_ holds a cell's own processes; <top>/<cell...> is the cell.
      auto rel = it->path().lexically_relative(top).string();
      if (rel == "_")
        continue;
      if (rel.size() >= 2 && rel.compare(rel.size() - 2, 2, "/_") == 0)
        rel.resize(rel.size() - 2);
      ids[static_cast<uint64_t>(st.st_ino)] = rel;
    }
  };
  walk(fs::path{mount_} / "pids" / root_, pids_ids_);
  walk(fs::path{mount_} / root_, v2_ids_);
}

std::string pid_resolver::cell_by_cgroup_id(uint64_t pids_id, uint64_t v2_id) {
  if (pids_id == 0 && v2_id == 0)
    return {};
  auto known = [&] {
    return (pids_id == 0 || pids_ids_.count(pids_id) > 0) &&
           (v2_id == 0 || v2_ids_.count(v2_id) > 0);
  };
  if (!known()) {
    scan_cgroup_ids();
    // Not found: remember that too (a new cgroup gets a new id, never this one).
    if (pids_id != 0)
      pids_ids_.try_emplace(pids_id);
    if (v2_id != 0)
      v2_ids_.try_emplace(v2_id);
  }
  if (pids_id != 0) {
    if (auto& cell = pids_ids_[pids_id]; !cell.empty())
      return cell;
  }
  return v2_id != 0 ? v2_ids_[v2_id] : std::string{};
}

std::string pid_resolver::cell_of(const std::string& text, const std::string& root) {
  // "7:memory:/cyto/web/_" (v1) or "0::/cyto/web/_" (v2): the path after the second ':'.
  auto prefix = "/" + root + "/";
  size_t pos = 0;
  while (pos < text.size()) {
    auto end = text.find('\n', pos);
    if (end == std::string::npos)
      end = text.size();
    std::string_view line{text.data() + pos, end - pos};
    pos = end + 1;
    auto c1 = line.find(':');
    auto c2 = c1 == line.npos ? line.npos : line.find(':', c1 + 1);
    if (c2 == line.npos)
      continue;
    auto path = line.substr(c2 + 1);
    if (path.size() <= prefix.size() || path.compare(0, prefix.size(), prefix) != 0)
      continue;
    auto cell = path.substr(prefix.size());
    // A cell's own processes live in its leaf "_".
    if (cell.size() >= 2 && cell.substr(cell.size() - 2) == "/_")
      cell.remove_suffix(2);
    else if (cell == "_")
      continue;
    return std::string{cell};
  }
  return {};
}

pid_resolver::process pid_resolver::read(uint32_t tgid) const {
  process p;
  auto dir = proc_ + "/" + std::to_string(tgid);
  std::string text;
  if (slurp(dir + "/cgroup", text))
    p.cell = cell_of(text, root_);
  if (slurp(dir + "/status", text)) {
    p.ns_pid = last_number(text, "NSpid:");
    p.ppid = last_number(text, "PPid:");
  }
  return p;
}

const pid_resolver::process& pid_resolver::lookup(uint32_t tgid) {
  auto i = cache_.find(tgid);
  if (i != cache_.end()) {
    ++counters_.hits;
    return i->second;
  }
  ++counters_.misses;
  auto p = read(tgid);
  if (p.ns_pid == 0) {
    // Not readable (gone, or not there yet): answer, but do not remember.
    miss_ = std::move(p);
    return miss_;
  }
  if (cache_.size() >= max_entries_)
    cache_.clear(); // crude but bounded; entries are cheap to read again
  return cache_.emplace(tgid, std::move(p)).first->second;
}

observed_event pid_resolver::resolve(const ebpf::event& e) {
  observed_event out;
  out.kind = static_cast<event_kind>(e.kind);
  out.monotonic_nanos = static_cast<int64_t>(e.timestamp_ns);
  out.pid = e.pid;
  out.tgid = e.tgid;
  out.comm = fixed(e.comm, sizeof(e.comm));
  if (out.kind == event_kind::exec) {
    // A new program in the same process: the cell may be the same but what we know of
    // the process (e.g. a fork not seen before) is read afresh, as early as we can.
    cache_.erase(e.tgid);
    out.filename = fixed(e.filename, sizeof(e.filename));
  }
  const auto& p = lookup(e.tgid);
  out.cell = p.cell;
  out.ns_pid = p.ns_pid;
  out.ppid = p.ppid;
  // Gone from /proc already, or a zombie there (whose cgroups read as "/"): what the
  // kernel wrote into the event is all there is.
  if (out.cell.empty())
    out.cell = cell_by_cgroup_id(e.pids_cgroup_id, e.cgroup_id);
  if (out.ns_pid == 0)
    out.ns_pid = e.ns_tgid;
  switch (out.kind) {
  case event_kind::signal:
    out.signo = e.signo;
    out.signal_result = e.signal_result;
    out.sender_pid = e.sender_pid;
    out.sender_tgid = e.sender_tgid;
    out.sender_comm = fixed(e.sender_comm, sizeof(e.sender_comm));
    break;
  case event_kind::exit:
    out.exit_code = (e.exit_status >> 8) & 0xff;
    out.exit_signal = e.exit_status & 0x7f;
    // Threads exit one by one; the process is gone when its leader goes.
    if (e.pid == e.tgid)
      cache_.erase(e.tgid);
    break;
  default:
    break;
  }
  return out;
}

} // namespace cyto::observe
