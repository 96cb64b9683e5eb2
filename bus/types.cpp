#include "bus/types.hpp"

#include "bus/errc.hpp"
#include "bus/federation_actor.hpp"
#include "bus/interfaces.hpp"

namespace cyto {

std::string to_string(log_level x) {
  switch (x) {
    case log_level::trace: return "trace";
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warn: return "warn";
    case log_level::error: return "error";
    case log_level::critical: return "critical";
  }
  return "unknown";
}

std::string to_string(cgroup_mode x) {
  switch (x) {
    case cgroup_mode::unknown: return "unknown";
    case cgroup_mode::v1: return "v1";
    case cgroup_mode::hybrid: return "hybrid";
    case cgroup_mode::v2: return "v2";
  }
  return "unknown";
}

namespace bus {

void add_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<topic_batch>("cyto.topic_batch");
  cfg.add_message_type<copy_stream_actor>("cyto.copy_stream_actor");
  cfg.add_message_type<topic_stats>("cyto.topic_stats");
  cfg.add_message_type<log_entry>("cyto.log_entry");
  cfg.add_message_type<std::vector<log_entry>>("cyto.log_entries");
  cfg.add_message_type<log_level>("cyto.log_level");
  cfg.add_message_type<log_batch>("cyto.log_batch");
  cfg.add_message_type<observe_stats>("cyto.observe_stats");
  cfg.add_message_type<host_features>("cyto.host_features");
  cfg.add_message_type<node_info>("cyto.node_info");
  cfg.add_message_type<health_report>("cyto.health_report");
  cfg.add_message_type<cell_spec>("cyto.cell_spec");
  cfg.add_message_type<cell_limits>("cyto.cell_limits");
  cfg.add_message_type<io_device_limit>("cyto.io_device_limit");
  cfg.add_message_type<executable_spec>("cyto.executable_spec");
  cfg.add_message_type<executable_info>("cyto.executable_info");
  cfg.add_message_type<exit_status>("cyto.exit_status");
  cfg.add_message_type<cell_info>("cyto.cell_info");
  cfg.add_message_type<std::vector<cell_info>>("cyto.cell_infos");
  cfg.add_message_type<process_exited>("cyto.process_exited");
  cfg.add_message_type<process_output>("cyto.process_output");
  cfg.add_message_type<image_layer>("cyto.image_layer");
  cfg.add_message_type<std::vector<image_layer>>("cyto.image_layers");
  cfg.add_message_type<image_info>("cyto.image_info");
  cfg.add_message_type<std::vector<image_info>>("cyto.image_infos");
  cfg.add_message_type<pull_phase>("cyto.pull_phase");
  cfg.add_message_type<image_progress>("cyto.image_progress");
  cfg.add_message_type<prune_report>("cyto.prune_report");
  cfg.add_message_type<rootfs_info>("cyto.rootfs_info");
  cfg.add_message_type<std::vector<rootfs_info>>("cyto.rootfs_infos");
  cfg.add_message_type<image_progress_sink_actor>("cyto.image_progress_sink_actor");
  cfg.add_message_type<cell_usage>("cyto.cell_usage");
  cfg.add_message_type<std::vector<cell_usage>>("cyto.cell_usages");
  cfg.add_message_type<cell_stats>("cyto.cell_stats");
  cfg.add_message_type<stats_batch>("cyto.stats_batch");
  cfg.add_message_type<output_line>("cyto.output_line");
  cfg.add_message_type<output_filter>("cyto.output_filter");
  cfg.add_message_type<output_history>("cyto.output_history");
  cfg.add_message_type<output_batch>("cyto.output_batch");
  cfg.add_message_type<event_kind>("cyto.event_kind");
  cfg.add_message_type<event_filter>("cyto.event_filter");
  cfg.add_message_type<observed_event>("cyto.observed_event");
  cfg.add_message_type<std::vector<observed_event>>("cyto.observed_events");
  cfg.add_message_type<event_batch>("cyto.event_batch");
  cfg.add_message_type<stats_sink_actor>("cyto.stats_sink_actor");
  cfg.add_message_type<output_sink_actor>("cyto.output_sink_actor");
  cfg.add_message_type<event_sink_actor>("cyto.event_sink_actor");
  cfg.add_message_type<topic_subscriber_actor>("cyto.topic_subscriber_actor");
  cfg.add_message_type<log_sink_actor>("cyto.log_sink_actor");
  cfg.add_message_type<network_spec>("cyto.network_spec");
  cfg.add_message_type<port_mapping>("cyto.port_mapping");
  cfg.add_message_type<std::vector<port_mapping>>("cyto.port_mappings");
  cfg.add_message_type<attach_request>("cyto.attach_request");
  cfg.add_message_type<tap_request>("cyto.tap_request");
  cfg.add_message_type<net_attachment>("cyto.net_attachment");
  cfg.add_message_type<std::vector<net_attachment>>("cyto.net_attachments");
  cfg.add_message_type<network_info>("cyto.network_info");
  cfg.add_message_type<std::vector<network_info>>("cyto.network_infos");
  cfg.add_message_type<container_spec>("cyto.container_spec");
  cfg.add_message_type<container_state>("cyto.container_state");
  cfg.add_message_type<container_info>("cyto.container_info");
  cfg.add_message_type<std::vector<container_info>>("cyto.container_infos");
  cfg.add_message_type<run_options>("cyto.run_options");
  cfg.add_message_type<exec_spec>("cyto.exec_spec");
  cfg.add_message_type<exec_info>("cyto.exec_info");
  cfg.add_message_type<pod_spec>("cyto.pod_spec");
  cfg.add_message_type<pod_info>("cyto.pod_info");
  cfg.add_message_type<std::vector<pod_info>>("cyto.pod_infos");
  cfg.add_message_type<volume_user>("cyto.volume_user");
  cfg.add_message_type<volume_info>("cyto.volume_info");
  cfg.add_message_type<std::vector<volume_info>>("cyto.volume_infos");
  cfg.add_message_type<volume_claim>("cyto.volume_claim");
  add_federation_types(cfg);
  cfg.add_message_type<vm_drive>("cyto.vm_drive");
  cfg.add_message_type<std::vector<vm_drive>>("cyto.vm_drives");
  cfg.add_message_type<vm_spec>("cyto.vm_spec");
  cfg.add_message_type<vm_state>("cyto.vm_state");
  cfg.add_message_type<vm_info>("cyto.vm_info");
  cfg.add_message_type<std::vector<vm_info>>("cyto.vm_infos");
  cfg.add_message_type<qmp_event>("cyto.qmp_event");
  cfg.add_error_category(errc_category,
                         [](uint8_t code, caf::atom_value, const caf::message& ctx) {
                           auto text = ctx.match_elements<std::string>() ? ctx.get_as<std::string>(0)
                                                                        : caf::to_string(ctx);
                           return render(static_cast<errc>(code), text);
                         });
}

} // namespace bus
} // namespace cyto
