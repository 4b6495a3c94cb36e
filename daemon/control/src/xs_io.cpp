// Xenstore helpers of the control plane: key readers over a transaction (netif::KeyReader),
// writes that never recreate a removed folder, and the xenbus_dev_fatal()-style error node.
#include <spdlog/spdlog.h>

#include "impl.hpp"

namespace dpnb::control {

netif::KeyReader ControlPlane::Impl::reader(hv::XsTxn txn, const std::string& folder) {
    return [this, txn, folder](std::string_view key) -> Result<std::optional<std::string>> {
        std::string path = folder;
        path += '/';
        path += key;
        auto v = xs_->read(txn, path);
        if (v) return std::optional<std::string>(std::move(*v));
        if (v.error().code == Errc::not_found) return std::optional<std::string>();
        return std::move(v).error();
    };
}

Result<std::optional<std::string>> ControlPlane::Impl::read_opt(const std::string& folder,
                                                                std::string_view key) {
    return reader(hv::kNoTxn, folder)(key);
}

Result<bool> ControlPlane::Impl::exists(const std::string& path) {
    auto v = xs_->read(hv::kNoTxn, path);
    if (v) return true;
    if (v.error().code == Errc::not_found) return false;
    return std::move(v).error();
}

Result<bool> ControlPlane::Impl::write_if_present(const std::string& folder,
                                                  const std::vector<netif::XsEntry>& entries) {
    bool present = false;
    Status st = hv::run_transaction(*xs_, [&](hv::XsTxn t) -> Status {
        present = false;
        auto v = xs_->read(t, folder);
        if (!v) return v.error().code == Errc::not_found ? ok() : Status(std::move(v).error());
        present = true;
        for (const netif::XsEntry& e : entries)
            if (Status w = xs_->write(t, folder + "/" + e.key, e.value); !w) return w;
        return ok();
    });
    if (!st) return std::move(st).error();
    return present;
}

void log_xenstore_failure(std::string_view vif, std::string_view what, const Error& e) {
    spdlog::warn("control: {}: xenstore: {}: {}", vif, what, e.describe());
}

// xenbus_dev_fatal() writes "<errno> <message>" to error/<nodename>/error, relative to the
// backend domain's home: /local/domain/<self>/error/backend/vif/<dom>/<handle>/error.
void ControlPlane::Impl::write_error_node(Vif& v, const Error& e) {
    const std::string node = netif::format_backend_error_path(v.path) + "/error";
    const std::string value = std::to_string(to_errno(e)) + " " + e.message;
    if (Status st = xs_->write(hv::kNoTxn, node, value); !st) {
        count(ControlError::xenstore);
        log_xenstore_failure(v.name, "writing " + node, st.error());
        return;
    }
    v.error_node_written = true;
}

void ControlPlane::Impl::remove_error_node(Vif& v) {
    const std::string folder = netif::format_backend_error_path(v.path);
    Status st = xs_->rm(hv::kNoTxn, folder);
    if (!st && st.error().code != Errc::not_found) {
        count(ControlError::xenstore);
        log_xenstore_failure(v.name, "removing " + folder, st.error());
        return;
    }
    v.error_node_written = false;
    // The per-guest folder goes with its last vif, as libxl__xs_path_cleanup() leaves no
    // empty parents behind.
    const std::string guest = "/local/domain/" + std::to_string(v.path.backend) +
                              "/error/backend/vif/" + std::to_string(v.path.frontend);
    auto children = xs_->directory(hv::kNoTxn, guest);
    if (children && children->empty()) (void)xs_->rm(hv::kNoTxn, guest);
}

} // namespace dpnb::control
