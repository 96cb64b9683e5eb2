#include "services/bridge.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <caf/all.hpp>
#include <caf/scoped_execution_unit.hpp>
#include <kj/debug.h>

#include "bus/errc.hpp"
#include "bus/logging.hpp"

namespace cyto::services {

namespace {

kj::AutoCloseFd make_event_fd() {
  int fd;
  KJ_SYSCALL(fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), "eventfd for the kj <-> CAF bridge");
  return kj::AutoCloseFd(fd);
}

} // namespace

bridge::bridge(caf::actor_system& sys, kj::UnixEventPort& port, kj::Duration deadline)
  : companion_handle_(sys.spawn<caf::actor_companion>()),
    companion_(static_cast<caf::actor_companion*>(
      caf::actor_cast<caf::abstract_actor*>(companion_handle_))),
    event_fd_(make_event_fd()),
    observer_(port, event_fd_.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ),
    alive_(std::make_shared<bridge*>(this)),
    timer_(port.getTimer()),
    port_(port),
    deadline_(deadline),
    drain_task_(nullptr) {
  companion_->on_enqueue([this](caf::mailbox_element_ptr ptr) {
    bool wake;
    {
      std::lock_guard guard{mtx_};
      wake = inbox_.empty();
      inbox_.push_back(std::move(ptr));
    }
    if (wake) {
      uint64_t one = 1;
      // A full counter (never in practice) still leaves the fd readable: nothing lost.
      [[maybe_unused]] auto n = ::write(event_fd_.get(), &one, sizeof(one));
    }
  });
  drain_task_ = drain().eagerlyEvaluate([](kj::Exception&& e) {
    log::get("gateway")->critical("bridge drain loop failed: {}", e.getDescription().cStr());
  });
}

bridge::~bridge() {
  // Once the handler is reset (under the companion's lock) no CAF thread runs it any more.
  // CAF 0.17 declares actor_companion::disconnect but does not define it: do its work here.
  companion_->on_enqueue(nullptr);
  caf::scoped_execution_unit unit{&companion_->home_system()};
  companion_->cleanup(caf::exit_reason::user_shutdown, &unit);
  alive_.reset(); // request promises that outlive us no longer reach back
  deadline_task_ = nullptr;
  std::lock_guard guard{mtx_};
  inbox_.clear();
  deadlines_.clear();
  pending_.clear();
}

caf::actor bridge::handle() const {
  return companion_handle_;
}

void bridge::on_message(message_handler handler) {
  on_message_ = std::move(handler);
}

void bridge::cancel(uint64_t ticket) noexcept {
  forget(ticket);
}

std::unique_ptr<bridge::pending_base> bridge::take(uint64_t id) noexcept {
  auto i = pending_.find(id);
  if (i == pending_.end())
    return nullptr;
  auto p = std::move(i->second);
  pending_.erase(i);
  if (p->deadline)
    deadlines_.erase(*p->deadline);
  p->deadline.reset();
  return p;
}

void bridge::forget(uint64_t id) noexcept {
  // Destroying a promise_pending destroys its fulfiller, which is fine: its promise is
  // gone (that is why we are here) or it is rejected as broken.
  auto p = take(id);
}

uint64_t bridge::send(caf::strong_actor_ptr dst, caf::message msg,
                      std::unique_ptr<pending_base> p, kj::Maybe<kj::Duration> deadline) {
  auto id = next_id_++;
  ++totals_.requests;
  ++totals_.by_verb[!msg.empty() && msg.match_element<caf::atom_value>(0)
                      ? static_cast<uint64_t>(msg.get_as<caf::atom_value>(0))
                      : 0];
  if (!dst) {
    caf::message err = caf::make_message(
      cyto::make_error(errc::unavailable, "service not running"));
    p->complete(err);
    return id;
  }
  p->node = dst->node();
  if (!down_.empty()) {
    if (auto i = down_.find(p->node); i != down_.end()) {
      caf::message err = caf::make_message(
        cyto::make_error(errc::unavailable, "node " + i->second + " is down"));
      p->complete(err);
      return id;
    }
  }
  if (msg.size() > 0 && msg.match_element<caf::atom_value>(0))
    p->verb = msg.get_as<caf::atom_value>(0);
  KJ_IF_MAYBE (d, deadline) {
    auto at = timer_.now() + *d;
    p->deadline = deadlines_.emplace(at, id);
    // Deadlines mostly come in order (one duration for all): re-arm only for an earlier
    // one, and never from inside expire_due (deadline_loop re-arms after it).
    if (!expiring_ && (!armed_ || at < *armed_))
      deadline_task_ = deadline_loop().eagerlyEvaluate([](kj::Exception&& e) {
        log::get("gateway")->critical("bridge deadline loop failed: {}",
                                      e.getDescription().cStr());
      });
  }
  pending_.emplace(id, std::move(p));
  auto mid = caf::make_message_id(caf::normal_message_priority_constant{}, id);
  if (outgoing_.empty())
    flush_task_ = kj::evalLast([this] { flush_outgoing(); }).eagerlyEvaluate(nullptr);
  outgoing_.emplace_back(std::move(dst),
                         caf::make_mailbox_element(companion_->ctrl(), mid, {}, std::move(msg)));
  return id;
}

kj::Promise<void> bridge::deadline_loop() {
  if (deadlines_.empty()) {
    armed_.reset();
    return kj::NEVER_DONE;
  }
  armed_ = deadlines_.begin()->first;
  return timer_.atTime(*armed_).then([this] {
    expire_due();
    return deadline_loop();
  });
}

void bridge::expire_due() {
  expiring_ = true;
  KJ_DEFER(expiring_ = false);
  auto now = timer_.now();
  std::vector<std::unique_ptr<pending_base>> due;
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    auto id = deadlines_.begin()->second;
    auto i = pending_.find(id);
    if (i == pending_.end()) { // cannot happen: take() unlinks deadlines
      deadlines_.erase(deadlines_.begin());
      continue;
    }
    due.push_back(take(id));
  }
  expired_ += due.size();
  auto seconds = deadline_ / kj::SECONDS;
  for (auto& p : due) {
    auto verb = caf::to_string(p->verb);
    caf::message err = caf::make_message(cyto::make_error(
      errc::timeout, "no answer to " + (verb.empty() ? std::string{"the request"} : verb)
                       + " within " + std::to_string(seconds) + " s (the gateway's call deadline)"));
    p->complete(err);
  }
}

void bridge::count_error(const caf::error& err) noexcept {
  auto code = static_cast<size_t>(code_of(err));
  ++totals_.errors[code <= static_cast<size_t>(errc_last) ? code : static_cast<size_t>(errc::internal)];
}

void bridge::node_down(const caf::node_id& node, const std::string& name) {
  down_[node] = name;
  std::vector<std::unique_ptr<pending_base>> failed;
  std::vector<uint64_t> ids;
  for (auto& [id, p] : pending_)
    if (p->node == node)
      ids.push_back(id);
  for (auto id : ids)
    failed.push_back(take(id));
  if (failed.empty())
    return;
  caf::message err = caf::make_message(
    cyto::make_error(errc::unavailable, "node " + name + " is down"));
  for (auto& p : failed)
    p->complete(err);
}

void bridge::node_up(const caf::node_id& node) {
  down_.erase(node);
}

void bridge::flush_outgoing() {
  auto batch = std::move(outgoing_);
  outgoing_.clear();
  for (auto& [dst, element] : batch)
    dst->enqueue(std::move(element), nullptr);
}

kj::Promise<void> bridge::drain() {
  return observer_.whenBecomesReadable().then([this]() -> kj::Promise<void> {
    uint64_t count;
    [[maybe_unused]] auto n = ::read(event_fd_.get(), &count, sizeof(count));
    std::vector<caf::mailbox_element_ptr> batch;
    {
      std::lock_guard guard{mtx_};
      batch.swap(inbox_);
    }
    for (auto& element : batch)
      dispatch(*element);
    return drain();
  });
}

void bridge::dispatch(caf::mailbox_element& element) {
  auto msg = element.move_content_to_message();
  if (element.mid.is_response()) {
    auto p = take(element.mid.request_id().integer_value());
    if (!p)
      return; // cancelled or expired: a late answer
    if (msg.match_elements<caf::error>())
      count_error(msg.get_as<caf::error>(0));
    p->complete(msg);
    return;
  }
  if (on_message_)
    on_message_(element.sender, msg);
}

} // namespace cyto::services
