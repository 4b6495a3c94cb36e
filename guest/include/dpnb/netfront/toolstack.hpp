// The toolstack's part of a vif, as libxl does it for `xl network-attach` / `network-detach`
// (tools/libs/light/libxl_nic.c, libxl_device.c in Xen 4.17): the frontend folder in the guest's
// xenstore home, the backend folder in the backend domain's, and libxl's own copy under
// /libxl, written in one transaction with libxl's keys and permissions; and the removal
// (online = 0, state = Closing, wait for the backend's Closed, then remove the folders).
//
// This is what tests and the demo use to plug a vif into the daemon. It needs a xenstore
// connection with dom0's privileges (the simulated hypervisor's <dir>/xenstore-0.sock).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dpnb/hv/xenstore.hpp"
#include "dpnb/netif/xenbus_state.hpp"
#include "dpnb/netif/xs_value.hpp"

namespace dpnb::netfront {

// libxl_device_nic, the fields that reach xenstore.
struct VifConfig {
    hv::DomId guest = hv::kDomIdInvalid;
    hv::DomId backend = hv::kDom0;
    std::uint32_t handle = 0; // devid
    netif::MacAddress mac;    // required: libxl would pick 00:16:3e:xx:xx:xx
    std::string bridge = "xenbr0";
    std::string script = "/etc/xen/scripts/vif-bridge";
    std::string type = "vif";             // libxl_nic_type: "vif" (PV) or "vif_ioemu"
    std::uint32_t mtu = 1500;             // "mtu" in the backend only when not 1500
    bool trusted = true;                  // frontend "trusted"
    std::optional<std::string> ip;        // "ip", verbatim
    std::optional<netif::RateLimit> rate; // "rate"
    std::optional<std::string> vifname;   // "vifname"
    // libxl since Xen 4.16 (commit "force netback to wait for hotplug execution") writes an
    // empty hotplug-status so that the backend holds Connected until the hotplug script has
    // run; older libxl wrote nothing.
    bool empty_hotplug_status = true;
};

struct VifPaths {
    std::string frontend; // /local/domain/<guest>/device/vif/<handle>
    std::string backend;  // /local/domain/<backend>/backend/vif/<guest>/<handle>
    std::string libxl;    // /libxl/<guest>/device/vif/<handle>
};

// Paths as libxl derives them (libxl__device_{frontend,backend,libxl}_path), with the
// homes read from xenstore (Xenstore::domain_path).
Result<VifPaths> vif_paths(hv::Xenstore& xs, hv::DomId guest, hv::DomId backend,
                           std::uint32_t handle);

// The (key, value) pairs libxl writes, in libxl's order (tests compare against them).
struct VifEntries {
    std::vector<std::pair<std::string, std::string>> backend;
    std::vector<std::pair<std::string, std::string>> frontend;
    std::vector<std::pair<std::string, std::string>> frontend_ro; // owned by the backend
};
VifEntries vif_entries(const VifConfig& config, const VifPaths& paths);

// libxl__device_add_async + libxl__device_generic_add: fails with Errc::exists when libxl's
// copy of the device exists already; otherwise (re)creates both folders in one
// transaction. Frontend folder: owned by the guest, readable by the backend; its "mtu" owned
// by the backend, readable by the guest. Backend folder: owned by the backend domain,
// readable by the guest.
Status add_vif(hv::Xenstore& xs, const VifConfig& config);

// libxl__initiate_device_generic_remove: online = 0 and, unless the backend is already
// Closed, state = Closing, in one transaction. Errc::not_found when the backend folder is
// gone (nothing to wait for).
Status request_vif_removal(hv::Xenstore& xs, hv::DomId guest, hv::DomId backend,
                           std::uint32_t handle);

// libxl__device_destroy (from the toolstack domain): removes the frontend folder, libxl's copy
// and the backend folder, each with its parents that became empty (libxl__xs_path_cleanup),
// in one transaction.
Status destroy_vif(hv::Xenstore& xs, hv::DomId guest, hv::DomId backend, std::uint32_t handle);

// Waits (with a watch) until `path` holds `state`. Errc::again on timeout, with the last state
// seen in the message. The connection's watch events are consumed.
Status wait_for_state(hv::Xenstore& xs, const std::string& path, netif::XenbusState state,
                      std::chrono::milliseconds timeout);

struct RemoveResult {
    bool forced = false; // the backend did not reach Closed in time; folders removed anyway
};

// `xl network-detach`: request the removal, wait up to `timeout` (libxl:
// LIBXL_DESTROY_TIMEOUT, 10 s) for the backend's Closed, then destroy the folders. Like
// libxl's auto-force, a backend that does not answer in time does not keep the device.
Result<RemoveResult> remove_vif(hv::Xenstore& xs, hv::DomId guest, hv::DomId backend,
                                std::uint32_t handle,
                                std::chrono::milliseconds timeout = std::chrono::seconds(10));

} // namespace dpnb::netfront
