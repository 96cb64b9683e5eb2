#include "actors/network/netns.hpp"

#include <cerrno>
#include <cstring>
#include <string_view>
#include <thread>

#include <fcntl.h>
#include <sched.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bus/errc.hpp"

namespace cyto::network {

caf::error create_netns(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (fd < 0)
    return make_error(errno == EEXIST ? errc::already_exists : errc::internal,
                      "create netns file " + path + ": " + std::strerror(errno));
  ::close(fd);
  std::string failed;
  int failed_errno = 0;
  // The thread ends right after: its changed namespace dies with it (the mount keeps it).
  std::thread worker{[&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      failed_errno = errno;
      failed = std::string{"unshare(CLONE_NEWNET): "} + std::strerror(errno);
      return;
    }
    if (::mount("/proc/thread-self/ns/net", path.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      failed_errno = errno;
      failed = "bind the new netns onto " + path + ": " + std::strerror(errno);
      return;
    }
    // Like podman and docker: ICMP echo sockets for every group, so ping needs no
    // CAP_NET_RAW. /proc/sys/net is this thread's new netns.
    int sysctl = ::open("/proc/sys/net/ipv4/ping_group_range", O_WRONLY | O_CLOEXEC);
    constexpr std::string_view all_groups = "0 2147483647";
    if (sysctl < 0 || ::write(sysctl, all_groups.data(), all_groups.size()) < 0) {
      failed_errno = errno;
      failed = std::string{"set net.ipv4.ping_group_range in the new netns: "} + std::strerror(errno);
    }
    if (sysctl >= 0)
      ::close(sysctl);
  }};
  worker.join();
  if (!failed.empty()) {
    ::umount2(path.c_str(), MNT_DETACH); // if the bind was made (EINVAL otherwise)
    ::unlink(path.c_str());
    return make_error(failed_errno == EPERM ? errc::permission_denied : errc::internal, failed);
  }
  return {};
}

caf::error remove_netns(const std::string& path) {
  if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT)
    return make_error(errc::internal, "unmount netns " + path + ": " + std::strerror(errno));
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return make_error(errc::internal, "remove netns file " + path + ": " + std::strerror(errno));
  return {};
}

caf::error delete_link(const std::string& name) {
  if (name.empty() || name.size() >= 16)
    return make_error(errc::invalid_argument, "interface name '" + name + "'");
  int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0)
    return make_error(errc::internal, std::string{"netlink socket: "} + std::strerror(errno));
  struct {
    nlmsghdr hdr;
    ifinfomsg ifi;
    char attrs[64];
  } req{};
  req.hdr.nlmsg_type = RTM_DELLINK;
  req.hdr.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  req.hdr.nlmsg_seq = 1;
  req.ifi.ifi_family = AF_UNSPEC;
  auto* rta = reinterpret_cast<rtattr*>(req.attrs);
  rta->rta_type = IFLA_IFNAME;
  rta->rta_len = static_cast<unsigned short>(RTA_LENGTH(name.size() + 1));
  std::memcpy(RTA_DATA(rta), name.c_str(), name.size() + 1);
  req.hdr.nlmsg_len = NLMSG_LENGTH(sizeof(ifinfomsg)) + RTA_ALIGN(rta->rta_len);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  caf::error out;
  if (::sendto(fd, &req, req.hdr.nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof(kernel))
      < 0) {
    out = make_error(errc::internal, "delete link " + name + ": " + std::strerror(errno));
  } else {
    char buf[4096];
    auto n = ::recv(fd, buf, sizeof(buf), 0);
    auto* h = reinterpret_cast<nlmsghdr*>(buf);
    if (n >= static_cast<ssize_t>(sizeof(nlmsghdr)) && h->nlmsg_type == NLMSG_ERROR) {
      auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
      if (e->error != 0 && e->error != -ENODEV)
        out = make_error(errc::internal, "delete link " + name + ": " + std::strerror(-e->error));
    }
  }
  ::close(fd);
  return out;
}

} // namespace cyto::network
