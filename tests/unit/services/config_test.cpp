#define BOOST_TEST_MODULE unit_services_config
#include <boost/test/unit_test.hpp>

#include "services/config.hpp"

using namespace cyto::services;

namespace {

bool mentions(const std::optional<std::string>& err, const std::string& what) {
  return err && err->find(what) != std::string::npos;
}

} // namespace

BOOST_AUTO_TEST_CASE(defaults_are_valid) {
  daemon_config cfg;
  BOOST_TEST(!validate(cfg).has_value());
  BOOST_TEST(cfg.socket_path == "/run/cyto/cyto.sock");
  BOOST_TEST(cfg.state_dir == "/var/lib/cyto");
}

BOOST_AUTO_TEST_CASE(good_toml_is_applied) {
  daemon_config cfg;
  auto err = apply_toml(R"(
node_name = "n1"
state_dir = "/tmp/x"
log_level = "debug"
[socket]
path = "/tmp/x/c.sock"
group = "wheel"
[scheduler]
policy = "stealing"
threads = 2
[log]
history = 50
)",
                        cfg);
  BOOST_TEST(!err.has_value(), (err ? *err : ""));
  BOOST_TEST(cfg.node_name == "n1");
  BOOST_TEST(cfg.state_dir == "/tmp/x");
  BOOST_TEST(cfg.log_level == "debug");
  BOOST_TEST(cfg.socket_path == "/tmp/x/c.sock");
  BOOST_TEST(cfg.socket_group == "wheel");
  BOOST_TEST(cfg.scheduler_policy == "stealing");
  BOOST_TEST(cfg.scheduler_threads == 2u);
  BOOST_TEST(cfg.log_history == 50u);
}

BOOST_AUTO_TEST_CASE(dotted_keys_work_like_tables) {
  daemon_config cfg;
  BOOST_TEST(!apply_toml("socket.path = \"/a/b.sock\"\n", cfg).has_value());
  BOOST_TEST(cfg.socket_path == "/a/b.sock");
}

BOOST_AUTO_TEST_CASE(unknown_key_is_named_and_nothing_changes) {
  daemon_config cfg;
  auto err = apply_toml("node_name = \"n2\"\nbogus = 1\n", cfg);
  BOOST_TEST(mentions(err, "bogus"));
  BOOST_TEST(mentions(err, "unknown key"));
  BOOST_TEST(cfg.node_name.empty()); // all or nothing
  BOOST_TEST(mentions(apply_toml("[socket]\nport = 5\n", cfg), "socket.port"));
}

BOOST_AUTO_TEST_CASE(wrong_type_is_named) {
  daemon_config cfg;
  BOOST_TEST(mentions(apply_toml("socket.path = 5\n", cfg), "socket.path: expected a string"));
  BOOST_TEST(mentions(apply_toml("scheduler.threads = \"two\"\n", cfg), "scheduler.threads"));
  BOOST_TEST(mentions(apply_toml("scheduler.threads = -1\n", cfg), "out of range"));
  BOOST_TEST(mentions(apply_toml("socket = 3\n", cfg), "socket: expected a table"));
}

BOOST_AUTO_TEST_CASE(syntax_error_gives_the_line) {
  daemon_config cfg;
  BOOST_TEST(mentions(apply_toml("node_name = \"ok\"\nthis is not toml\n", cfg), "line 2"));
}

BOOST_AUTO_TEST_CASE(bad_values_are_refused_with_the_key) {
  daemon_config cfg;
  BOOST_TEST(mentions(apply_toml("log_level = \"loud\"\n", cfg), "log_level"));
  BOOST_TEST(mentions(apply_toml("state_dir = \"relative/dir\"\n", cfg), "state_dir"));
  BOOST_TEST(mentions(apply_toml("socket.path = \"x.sock\"\n", cfg), "socket.path"));
  BOOST_TEST(mentions(apply_toml("scheduler.policy = \"fifo\"\n", cfg), "scheduler.policy"));
  BOOST_TEST(mentions(apply_toml("node_name = \"a b\"\n", cfg), "node_name"));
  std::string long_path = "socket.path = \"/" + std::string(200, 'x') + "\"\n";
  BOOST_TEST(mentions(apply_toml(long_path, cfg), "socket.path"));
  BOOST_TEST(!validate(cfg).has_value());
}

BOOST_AUTO_TEST_CASE(missing_file_is_reported_with_its_path) {
  daemon_config cfg;
  BOOST_TEST(mentions(apply_toml_file("/nonexistent/cytod.toml", cfg), "/nonexistent/cytod.toml"));
}

BOOST_AUTO_TEST_CASE(shipped_example_config_is_valid) {
  daemon_config cfg;
  auto err = apply_toml_file(CYTO_SOURCE_DIR "/deploy/cytod.toml", cfg);
  BOOST_TEST(!err.has_value(), (err ? *err : ""));
  BOOST_TEST(cfg.socket_path == "/run/cyto/cyto.sock");
}

BOOST_AUTO_TEST_CASE(image_registry_keys_are_applied_and_checked) {
  daemon_config cfg;
  auto err = apply_toml(R"(
[images]
default_registry = "127.0.0.1:5000"
insecure_registries = ["127.0.0.1:5000", "localhost:5001"]
credentials_file = "/etc/cyto/auth.json"
parallel_layers = 8
[images.ca]
"reg.example:443" = "/etc/cyto/reg-ca.pem"
)",
                        cfg);
  BOOST_TEST(!err.has_value(), (err ? *err : ""));
  BOOST_TEST(cfg.default_registry == "127.0.0.1:5000");
  BOOST_TEST(cfg.insecure_registries.size() == 2u);
  BOOST_TEST(cfg.registry_credentials == "/etc/cyto/auth.json");
  BOOST_TEST(cfg.parallel_layers == 8u);
  BOOST_TEST(cfg.registry_ca["reg.example:443"] == "/etc/cyto/reg-ca.pem");
  daemon_config bad;
  BOOST_TEST(mentions(apply_toml("[images]\ninsecure_registries = \"x\"\n", bad),
                      "images.insecure_registries: expected an array"));
  BOOST_TEST(mentions(apply_toml("[images]\nparallel_layers = 0\n", bad), "images.parallel_layers"));
  BOOST_TEST(mentions(apply_toml("[images]\nca = 3\n", bad), "images.ca"));
  BOOST_TEST(bad.insecure_registries.empty()); // unchanged on error
}

BOOST_AUTO_TEST_CASE(container_keys_are_applied_and_checked) {
  daemon_config cfg;
  BOOST_TEST(cfg.default_seccomp);
  auto err = apply_toml(R"(
[containers]
runtime_path = "/opt/cyto/cyto-runtime"
demo_image = ""
seccomp = false
)",
                        cfg);
  BOOST_TEST(!err.has_value(), (err ? *err : ""));
  BOOST_TEST(cfg.runtime_path == "/opt/cyto/cyto-runtime");
  BOOST_TEST(cfg.demo_image.empty());
  BOOST_TEST(!cfg.default_seccomp);
  daemon_config bad;
  BOOST_TEST(mentions(apply_toml("[containers]\nseccomp = \"yes\"\n", bad),
                      "containers.seccomp: expected a boolean"));
  BOOST_TEST(mentions(apply_toml("[containers]\nruntime_path = \"rel/x\"\n", bad),
                      "containers.runtime_path: must be an absolute path"));
  BOOST_TEST(mentions(apply_toml("[containers]\ndemo_image = \"rel\"\n", bad),
                      "containers.demo_image"));
  BOOST_TEST(bad.default_seccomp); // unchanged on error
}

BOOST_AUTO_TEST_CASE(containers_default_network_follows_the_default_network_unless_set) {
  daemon_config cfg;
  BOOST_TEST(containers_default_network(cfg) == "cyto");
  BOOST_TEST(!apply_toml("[network]\ndefault_name = \"lan\"\n", cfg).has_value());
  BOOST_TEST(containers_default_network(cfg) == "lan");
  BOOST_TEST(!apply_toml("[containers]\ndefault_network = \"none\"\n", cfg).has_value());
  BOOST_TEST(containers_default_network(cfg).empty());
  BOOST_TEST(!apply_toml("[containers]\ndefault_network = \"\"\n", cfg).has_value());
  BOOST_TEST(containers_default_network(cfg).empty());
  BOOST_TEST(!apply_toml("[containers]\ndefault_network = \"web\"\n", cfg).has_value());
  BOOST_TEST(containers_default_network(cfg) == "web");
  daemon_config bad;
  BOOST_TEST(mentions(apply_toml("[containers]\ndefault_network = 1\n", bad),
                      "containers.default_network: expected a string"));
  BOOST_TEST(!bad.containers_default_network.has_value()); // unchanged on error
}

BOOST_AUTO_TEST_CASE(federation_keys_are_applied_and_checked) {
  daemon_config cfg;
  auto err = apply_toml(R"(
[federation]
listen = "0.0.0.0:7001"
peers = ["b@10.0.0.2:7001", "c@[fd00::3]:7001"]
cert = "/etc/cyto/pki/nodes/a.crt"
key = "/etc/cyto/pki/nodes/a.key"
ca = "/etc/cyto/pki/ca.crt"
)",
                        cfg);
  BOOST_TEST(!err.has_value(), (err ? *err : ""));
  BOOST_TEST(cfg.federation_listen == "0.0.0.0:7001");
  BOOST_TEST(cfg.federation_peers.size() == 2u);
  BOOST_TEST(cfg.federation_ca == "/etc/cyto/pki/ca.crt");
  daemon_config bad;
  BOOST_TEST(mentions(apply_toml("[federation]\nlisten = \"nowhere\"\n", bad),
                      "federation.listen: expected host:port"));
  BOOST_TEST(mentions(apply_toml("[federation]\nlisten = \"h:70000\"\n", bad), "federation.listen"));
  BOOST_TEST(mentions(apply_toml("[federation]\npeers = [\"10.0.0.2:7001\"]\n", bad),
                      "federation.peers: expected name@host:port"));
  BOOST_TEST(mentions(apply_toml("[federation]\npeers = [\"b@host\"]\n", bad), "federation.peers"));
  // Listening or joining without certificates is refused: federation is TLS only.
  BOOST_TEST(mentions(apply_toml("[federation]\nlisten = \"127.0.0.1:7001\"\n", bad),
                      "federation.cert, federation.key and federation.ca are required"));
  BOOST_TEST(bad.federation_listen.empty()); // unchanged on error
}

BOOST_AUTO_TEST_CASE(channel_port_is_read_and_off_by_default) {
  daemon_config cfg;
  BOOST_TEST(cfg.channel_port.empty());
  auto err = apply_toml("[channel]\nport = \"org.cyto.channel.0\"\n", cfg);
  BOOST_TEST(!err.has_value(), (err ? *err : ""));
  BOOST_TEST(cfg.channel_port == "org.cyto.channel.0");
  err = apply_toml("channel.port = 7\n", cfg);
  BOOST_REQUIRE(err.has_value());
  BOOST_TEST(err->find("channel.port") != std::string::npos, *err);
}

BOOST_AUTO_TEST_CASE(image_vm_settings_are_applied_and_paths_checked) {
  daemon_config cfg;
  auto err = apply_toml(R"(
[vms]
image_kernel = "/boot/vmlinuz"
image_initrd = "/boot/initramfs.cpio"
mke2fs = "/sbin/mke2fs"
qemu_img = "qemu-img"
)",
                        cfg);
  BOOST_TEST(!err.has_value(), (err ? *err : ""));
  BOOST_TEST(cfg.vm_image_kernel == "/boot/vmlinuz");
  BOOST_TEST(cfg.vm_image_initrd == "/boot/initramfs.cpio");
  BOOST_TEST(cfg.mke2fs == "/sbin/mke2fs");
  BOOST_TEST(cfg.qemu_img == "qemu-img");
  BOOST_TEST(mentions(apply_toml("vms.image_kernel = \"vmlinuz\"\n", cfg), "vms.image_kernel"));
  BOOST_TEST(cfg.vm_image_kernel == "/boot/vmlinuz"); // a refused file changes nothing
}

BOOST_AUTO_TEST_CASE(gateway_limits_are_applied_and_checked) {
  daemon_config cfg;
  BOOST_TEST(cfg.gateway_call_deadline == 60u);
  BOOST_TEST(cfg.gateway_connection_message_mib == 8u);
  BOOST_TEST(cfg.gateway_total_message_mib == 128u);
  auto err = apply_toml(R"(
[gateway]
call_deadline = 5
connection_message_mib = 2
total_message_mib = 16
)",
                        cfg);
  BOOST_TEST(!err.has_value(), (err ? *err : ""));
  BOOST_TEST(cfg.gateway_call_deadline == 5u);
  BOOST_TEST(cfg.gateway_connection_message_mib == 2u);
  BOOST_TEST(cfg.gateway_total_message_mib == 16u);
  daemon_config bad;
  BOOST_TEST(mentions(apply_toml("[gateway]\ncall_deadline = 0\n", bad),
                      "gateway.call_deadline: must be 1..86400"));
  BOOST_TEST(mentions(apply_toml("[gateway]\nconnection_message_mib = 65\n", bad),
                      "gateway.connection_message_mib: must be 1..64"));
  BOOST_TEST(mentions(apply_toml("[gateway]\ntotal_message_mib = 4\n", bad),
                      "gateway.total_message_mib"));
  BOOST_TEST(mentions(apply_toml("[gateway]\ncall_deadline = \"soon\"\n", bad),
                      "gateway.call_deadline"));
  BOOST_TEST(bad.gateway_call_deadline == 60u); // unchanged on error
}

BOOST_AUTO_TEST_CASE(metrics_listen_is_off_by_default_and_checked) {
  daemon_config cfg;
  BOOST_TEST(cfg.metrics_listen.empty());
  auto err = apply_toml("[metrics]\nlisten = \"127.0.0.1:9464\"\n", cfg);
  BOOST_TEST(!err.has_value(), (err ? *err : ""));
  BOOST_TEST(cfg.metrics_listen == "127.0.0.1:9464");
  BOOST_TEST(mentions(apply_toml("metrics.listen = \"9464\"\n", cfg), "metrics.listen"));
  BOOST_TEST(mentions(apply_toml("metrics.listen = 9464\n", cfg), "metrics.listen"));
  BOOST_TEST(mentions(apply_toml("metrics.port = 9464\n", cfg), "metrics.port: unknown key"));
  BOOST_TEST(cfg.metrics_listen == "127.0.0.1:9464"); // a refused file changes nothing
}

BOOST_AUTO_TEST_CASE(an_unreadable_file_is_named_with_the_reason) {
  daemon_config cfg;
  auto err = apply_toml_file("/nonexistent/cytod.toml", cfg);
  BOOST_TEST(mentions(err, "/nonexistent/cytod.toml: cannot read the file: No such file"));
  err = apply_toml_file("/", cfg);
  BOOST_TEST(mentions(err, "/: cannot read the file: not a regular file"));
}
