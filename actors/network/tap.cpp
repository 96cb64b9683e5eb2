#include "actors/network/tap.hpp"

#include <cerrno>
#include <cstring>
#include <vector>

// <net/if.h> before the kernel's headers (their libc-compat guards then skip struct ifreq).
#include <net/if.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "actors/network/netns.hpp"
#include "bus/errc.hpp"

namespace cyto::network {

namespace {

/// One rtnetlink request, built attribute by attribute.
class nl_message {
public:
  nl_message(uint16_t type, uint16_t flags) : buf_(NLMSG_HDRLEN, 0) {
    hdr()->nlmsg_type = type;
    hdr()->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
    hdr()->nlmsg_seq = 1;
  }
  template <class T>
  void put(const T& body) {
    append(&body, sizeof(body));
  }
  void attr(uint16_t type, const void* data, size_t len) {
    rtattr a{};
    a.rta_type = type;
    a.rta_len = static_cast<unsigned short>(RTA_LENGTH(len));
    append(&a, sizeof(a), false);
    append(data, len);
  }
  void attr(uint16_t type, const std::string& s) {
    attr(type, s.c_str(), s.size() + 1);
  }
  /// Starts a nested attribute; end it with `end_nest(offset)`.
  size_t begin_nest(uint16_t type) {
    auto at = buf_.size();
    rtattr a{};
    a.rta_type = type;
    append(&a, sizeof(a));
    return at;
  }
  void end_nest(size_t at) {
    reinterpret_cast<rtattr*>(buf_.data() + at)->rta_len =
        static_cast<unsigned short>(buf_.size() - at);
  }
  /// Sends it; 0 or the kernel's errno.
  int talk() {
    hdr()->nlmsg_len = static_cast<uint32_t>(buf_.size());
    int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
      return errno;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    int rc = 0;
    if (::sendto(fd, buf_.data(), buf_.size(), 0, reinterpret_cast<sockaddr*>(&kernel),
                 sizeof(kernel)) < 0) {
      rc = errno;
    } else {
      char reply[4096];
      auto n = ::recv(fd, reply, sizeof(reply), 0);
      auto* h = reinterpret_cast<nlmsghdr*>(reply);
      if (n < 0)
        rc = errno;
      else if (n >= static_cast<ssize_t>(sizeof(nlmsghdr)) && h->nlmsg_type == NLMSG_ERROR)
        rc = -static_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
    }
    ::close(fd);
    return rc;
  }

private:
  nlmsghdr* hdr() {
    return reinterpret_cast<nlmsghdr*>(buf_.data());
  }
  void append(const void* data, size_t len, bool align = true) {
    auto* p = static_cast<const char*>(data);
    buf_.insert(buf_.end(), p, p + len);
    if (align)
      buf_.resize(NLMSG_ALIGN(buf_.size()), 0);
  }
  std::vector<char> buf_;
};

/// Sets `ifindex` up, on master `master` when that is not 0.
int link_up(int ifindex, int master) {
  nl_message m{RTM_NEWLINK, 0};
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  ifi.ifi_flags = IFF_UP;
  ifi.ifi_change = IFF_UP;
  m.put(ifi);
  if (master) {
    uint32_t mi = static_cast<uint32_t>(master);
    m.attr(IFLA_MASTER, &mi, sizeof(mi));
  }
  return m.talk();
}

caf::error fail(const std::string& what, int err) {
  return make_error(err == EPERM ? errc::permission_denied : errc::internal,
                    what + ": " + std::strerror(err));
}

} // namespace

bool link_exists(const std::string& name) {
  return ::if_nametoindex(name.c_str()) != 0;
}

int master_of(const std::string& name) {
  int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0)
    return 0;
  struct {
    nlmsghdr hdr;
    ifinfomsg ifi;
    char attrs[64];
  } req{};
  req.hdr.nlmsg_type = RTM_GETLINK;
  req.hdr.nlmsg_flags = NLM_F_REQUEST;
  req.ifi.ifi_family = AF_UNSPEC;
  auto* rta = reinterpret_cast<rtattr*>(req.attrs);
  rta->rta_type = IFLA_IFNAME;
  rta->rta_len = static_cast<unsigned short>(RTA_LENGTH(name.size() + 1));
  std::memcpy(RTA_DATA(rta), name.c_str(), name.size() + 1);
  req.hdr.nlmsg_len = NLMSG_LENGTH(sizeof(ifinfomsg)) + RTA_ALIGN(rta->rta_len);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  int master = 0;
  if (::sendto(fd, &req, req.hdr.nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof(kernel)) >= 0) {
    alignas(nlmsghdr) char buf[16384];
    auto n = ::recv(fd, buf, sizeof(buf), 0);
    auto* h = reinterpret_cast<nlmsghdr*>(buf);
    if (n > 0 && NLMSG_OK(h, static_cast<uint32_t>(n)) && h->nlmsg_type == RTM_NEWLINK) {
      auto* ifi = static_cast<ifinfomsg*>(NLMSG_DATA(h));
      int len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*ifi)));
      for (auto* a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len))
        if (a->rta_type == IFLA_MASTER)
          master = static_cast<int>(*static_cast<uint32_t*>(RTA_DATA(a)));
    }
  }
  ::close(fd);
  return master;
}

caf::error ensure_bridge(const std::string& name, const std::string& gateway, int prefix) {
  if (name.empty() || name.size() >= IFNAMSIZ)
    return make_error(errc::invalid_argument, "bridge name '" + name + "'");
  if (!link_exists(name)) {
    nl_message m{RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL};
    ifinfomsg ifi{};
    ifi.ifi_family = AF_UNSPEC;
    m.put(ifi);
    m.attr(IFLA_IFNAME, name);
    auto info = m.begin_nest(IFLA_LINKINFO);
    m.attr(IFLA_INFO_KIND, std::string{"bridge"});
    m.end_nest(info);
    if (int rc = m.talk(); rc != 0 && rc != EEXIST)
      return fail("create bridge " + name, rc);
  }
  int index = static_cast<int>(::if_nametoindex(name.c_str()));
  if (index == 0)
    return fail("find bridge " + name, errno);
  in_addr gw{};
  if (::inet_pton(AF_INET, gateway.c_str(), &gw) != 1)
    return make_error(errc::invalid_argument, "gateway '" + gateway + "' is not IPv4");
  nl_message a{RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL};
  ifaddrmsg ifa{};
  ifa.ifa_family = AF_INET;
  ifa.ifa_prefixlen = static_cast<unsigned char>(prefix);
  ifa.ifa_index = static_cast<unsigned>(index);
  a.put(ifa);
  a.attr(IFA_LOCAL, &gw, sizeof(gw));
  a.attr(IFA_ADDRESS, &gw, sizeof(gw));
  if (int rc = a.talk(); rc != 0 && rc != EEXIST)
    return fail("give bridge " + name + " address " + gateway + "/" + std::to_string(prefix), rc);
  if (int rc = link_up(index, 0); rc != 0)
    return fail("set bridge " + name + " up", rc);
  return {};
}

caf::error create_tap(const std::string& tap, const std::string& bridge) {
  if (tap.empty() || tap.size() >= IFNAMSIZ)
    return make_error(errc::invalid_argument, "tap name '" + tap + "'");
  int master = static_cast<int>(::if_nametoindex(bridge.c_str()));
  if (master == 0)
    return make_error(errc::not_found, "bridge " + bridge + " does not exist");
  bool existed = link_exists(tap);
  int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0)
    return make_error(errno == ENOENT ? errc::unavailable : errc::internal,
                      std::string{"open /dev/net/tun: "} + std::strerror(errno));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, tap.c_str(), IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(fd, TUNSETIFF, &ifr) != 0) {
    int err = errno;
    ::close(fd);
    return fail("create tap " + tap, err);
  }
  if (::ioctl(fd, TUNSETPERSIST, 1) != 0) {
    int err = errno;
    ::close(fd);
    return fail("make tap " + tap + " persistent", err);
  }
  ::close(fd);
  int index = static_cast<int>(::if_nametoindex(tap.c_str()));
  int rc = index == 0 ? ENODEV : link_up(index, master);
  if (rc != 0) {
    if (!existed)
      delete_link(tap);
    return fail("put tap " + tap + " on bridge " + bridge, rc);
  }
  return {};
}

} // namespace cyto::network
