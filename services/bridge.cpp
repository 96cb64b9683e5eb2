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

bridge::bridge(caf::actor_system& sys, kj::UnixEventPort& port)
  : companion_handle_(sys.spawn<caf::actor_companion>()),
    companion_(static_cast<caf::actor_companion*>(
      caf::actor_cast<caf::abstract_actor*>(companion_handle_))),
    event_fd_(make_event_fd()),
    observer_(port, event_fd_.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ),
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
  std::lock_guard guard{mtx_};
  inbox_.clear();
  pending_.clear();
}

caf::actor bridge::handle() const {
  return companion_handle_;
}

void bridge::on_message(message_handler handler) {
  on_message_ = std::move(handler);
}

void bridge::cancel(uint64_t ticket) noexcept {
  pending_.erase(ticket);
}

uint64_t bridge::send(caf::strong_actor_ptr dst, caf::message msg,
                      std::unique_ptr<pending_base> p) {
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
  pending_.emplace(id, std::move(p));
  auto mid = caf::make_message_id(caf::normal_message_priority_constant{}, id);
  if (outgoing_.empty())
    flush_task_ = kj::evalLast([this] { flush_outgoing(); }).eagerlyEvaluate(nullptr);
  outgoing_.emplace_back(std::move(dst),
                         caf::make_mailbox_element(companion_->ctrl(), mid, {}, std::move(msg)));
  return id;
}

void bridge::count_error(const caf::error& err) noexcept {
  auto code = static_cast<size_t>(code_of(err));
  ++totals_.errors[code <= static_cast<size_t>(errc_last) ? code : static_cast<size_t>(errc::internal)];
}

void bridge::node_down(const caf::node_id& node, const std::string& name) {
  down_[node] = name;
  std::vector<std::unique_ptr<pending_base>> failed;
  for (auto i = pending_.begin(); i != pending_.end();) {
    if (i->second->node == node) {
      failed.push_back(std::move(i->second));
      i = pending_.erase(i);
    } else {
      ++i;
    }
  }
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
    auto i = pending_.find(element.mid.request_id().integer_value());
    if (i == pending_.end())
      return; // cancelled
    auto p = std::move(i->second);
    pending_.erase(i);
    if (msg.match_elements<caf::error>())
      count_error(msg.get_as<caf::error>(0));
    p->complete(msg);
    return;
  }
  if (on_message_)
    on_message_(element.sender, msg);
}

} // namespace cyto::services
