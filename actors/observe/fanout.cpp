#include "actors/observe/fanout.hpp"

namespace cyto::observe {

bool in_scope(const std::string& scope, bool nested, const std::string& cell) noexcept {
  if (cell == scope)
    return true;
  return nested && cell.size() > scope.size() && cell.compare(0, scope.size(), scope) == 0 &&
         cell[scope.size()] == '/';
}

bool matches(const event_filter& f, const observed_event& e) noexcept {
  if (f.kinds != 0 && (f.kinds & kind_bit(e.kind)) == 0)
    return false;
  if (f.cell.empty())
    return true;
  if (!in_scope(f.cell, f.nested, e.cell))
    return false;
  return f.executable.empty() || (e.cell == f.cell && e.executable == f.executable);
}

void event_fanout::add(uint64_t id, event_filter filter, size_t capacity, size_t credit) {
  subs_.insert_or_assign(id,
                         subscriber{std::move(filter), outbox<observed_event>{capacity, credit}});
}

bool event_fanout::remove(uint64_t id) {
  auto i = subs_.find(id);
  if (i == subs_.end())
    return false;
  subs_.erase(i);
  return true;
}

void event_fanout::publish(const observed_event& e) {
  ++counters_.published;
  for (auto& [id, s] : subs_) {
    if (!matches(s.filter, e))
      continue;
    auto before = s.box.total_dropped();
    s.box.push(e);
    counters_.lost += s.box.total_dropped() - before;
  }
}

bool event_fanout::grant(uint64_t id, size_t n) {
  return grant_credit(subs_, id, n);
}

} // namespace cyto::observe
