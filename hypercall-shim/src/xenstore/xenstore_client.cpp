// XenXenstore: dpnb::hv::Xenstore over libxenstore (see dpnb/hv/xenstore_client.hpp).
// A thin mapping: every call is one libxenstore call, its errno mapped to Errc, its malloc'ed
// answer copied out and freed.
#include "dpnb/hv/xenstore_client.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>

#include <sys/un.h>

// xenstore.h has no extern "C" of its own.
extern "C" {
#include <xenstore.h>
}

namespace dpnb::hv {

namespace {

// libxenstore's errno: the errno's code (result.hpp), and EBADF, which it answers once its
// connection is gone, means closed.
Error xs_error(std::string what, int err) {
    const Errc code = err == EBADF ? Errc::closed : errc_from_errno(err);
    return make_error(code, "xenstore " + what + ": " + std::strerror(err), err);
}

struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
};
template <class T>
using Malloced = std::unique_ptr<T, FreeDeleter>;

// libxenstore takes C strings: a nul inside would silently cut the path short.
std::optional<std::string> c_string(std::string_view s) {
    if (s.find('\0') != std::string_view::npos) return std::nullopt;
    return std::string(s);
}

Error bad_string(std::string_view what) {
    return make_error(Errc::invalid_argument, "xenstore: nul byte in " + std::string(what));
}

class XenXenstore final : public Xenstore {
public:
    XenXenstore(xs_handle* h, int fd) : h_(h), fd_(fd) {}
    ~XenXenstore() override { xs_close(h_); }
    XenXenstore(const XenXenstore&) = delete;
    XenXenstore& operator=(const XenXenstore&) = delete;

    Result<std::string> read(XsTxn txn, std::string_view path) override {
        auto p = c_string(path);
        if (!p) return bad_string("path");
        unsigned int len = 0;
        Malloced<char> value(static_cast<char*>(xs_read(h_, txn, p->c_str(), &len)));
        if (!value) return xs_error("read " + *p, errno);
        return std::string(value.get(), len);
    }

    Status write(XsTxn txn, std::string_view path, std::string_view value) override {
        auto p = c_string(path);
        if (!p) return bad_string("path");
        if (!xs_write(h_, txn, p->c_str(), value.data(), static_cast<unsigned>(value.size())))
            return xs_error("write " + *p, errno);
        return ok();
    }

    Status mkdir(XsTxn txn, std::string_view path) override {
        auto p = c_string(path);
        if (!p) return bad_string("path");
        if (!xs_mkdir(h_, txn, p->c_str())) return xs_error("mkdir " + *p, errno);
        return ok();
    }

    Status rm(XsTxn txn, std::string_view path) override {
        auto p = c_string(path);
        if (!p) return bad_string("path");
        if (!xs_rm(h_, txn, p->c_str())) return xs_error("rm " + *p, errno);
        return ok();
    }

    Result<std::vector<std::string>> directory(XsTxn txn, std::string_view path) override {
        auto p = c_string(path);
        if (!p) return bad_string("path");
        unsigned int num = 0;
        Malloced<char*> names(xs_directory(h_, txn, p->c_str(), &num));
        if (!names) return xs_error("directory " + *p, errno);
        std::vector<std::string> out;
        out.reserve(num);
        for (unsigned int i = 0; i < num; ++i)
            out.emplace_back(names.get()[i]);
        return out;
    }

    Result<std::vector<XsPerm>> get_permissions(XsTxn txn, std::string_view path) override {
        auto p = c_string(path);
        if (!p) return bad_string("path");
        unsigned int num = 0;
        Malloced<xs_permissions> perms(xs_get_permissions(h_, txn, p->c_str(), &num));
        if (!perms) return xs_error("get_permissions " + *p, errno);
        std::vector<XsPerm> out;
        out.reserve(num);
        for (unsigned int i = 0; i < num; ++i) {
            const xs_permissions& perm = perms.get()[i];
            if (perm.id > 0xFFFF)
                return make_error(Errc::protocol,
                                  "xenstore get_permissions " + *p + ": domain id out of range");
            out.push_back(
                XsPerm{static_cast<DomId>(perm.id),
                       static_cast<XsPerm::Access>(perm.perms & (XS_PERM_READ | XS_PERM_WRITE))});
        }
        return out;
    }

    Status set_permissions(XsTxn txn, std::string_view path,
                           const std::vector<XsPerm>& perms) override {
        auto p = c_string(path);
        if (!p) return bad_string("path");
        if (perms.empty())
            return make_error(Errc::invalid_argument, "xenstore set_permissions: no owner");
        std::vector<xs_permissions> raw;
        raw.reserve(perms.size());
        for (const auto& perm : perms) {
            unsigned int bits = 0;
            if (perm.access & XsPerm::read) bits |= XS_PERM_READ;
            if (perm.access & XsPerm::write) bits |= XS_PERM_WRITE;
            raw.push_back(xs_permissions{perm.dom, bits});
        }
        if (!xs_set_permissions(h_, txn, p->c_str(), raw.data(), static_cast<unsigned>(raw.size())))
            return xs_error("set_permissions " + *p, errno);
        return ok();
    }

    Result<XsTxn> transaction_start() override {
        xs_transaction_t t = xs_transaction_start(h_);
        if (t == XBT_NULL) return xs_error("transaction_start", errno);
        return XsTxn{t};
    }

    Status transaction_end(XsTxn txn, bool commit) override {
        if (!xs_transaction_end(h_, txn, !commit))
            return xs_error(commit ? "transaction commit" : "transaction abort", errno);
        return ok();
    }

    Status watch(std::string_view path, std::string_view token) override {
        auto p = c_string(path);
        auto t = c_string(token);
        if (!p || !t) return bad_string("watch path or token");
        if (!xs_watch(h_, p->c_str(), t->c_str())) return xs_error("watch " + *p, errno);
        return ok();
    }

    Status unwatch(std::string_view path, std::string_view token) override {
        auto p = c_string(path);
        auto t = c_string(token);
        if (!p || !t) return bad_string("watch path or token");
        if (!xs_unwatch(h_, p->c_str(), t->c_str())) return xs_error("unwatch " + *p, errno);
        return ok();
    }

    int watch_fd() const override { return fd_; }

    Result<std::optional<XsWatchEvent>> read_watch() override {
        Malloced<char*> event(xs_check_watch(h_));
        if (!event) {
            int err = errno;
            if (err == EAGAIN) return std::optional<XsWatchEvent>{};
            // With no event queued, libxenstore says EINVAL when its reader thread found
            // the connection closed.
            if (err == EINVAL) return make_error(Errc::closed, "xenstore connection closed");
            return xs_error("read_watch", err);
        }
        return std::optional<XsWatchEvent>{
            XsWatchEvent{event.get()[XS_WATCH_PATH], event.get()[XS_WATCH_TOKEN]}};
    }

    Result<std::string> domain_path(DomId dom) override {
        Malloced<char> path(xs_get_domain_path(h_, dom));
        if (!path) return xs_error("get_domain_path", errno);
        return std::string(path.get());
    }

private:
    xs_handle* h_;
    int fd_;
};

// libxenstore reads XENSTORED_PATH inside xs_open(): every open holds this lock, so that no
// open sees another's temporary value.
std::mutex open_mutex;

} // namespace

Result<std::unique_ptr<Xenstore>> open_xenstore(const std::string& socket_path) {
    if (!socket_path.empty()) {
        if (socket_path.size() >= sizeof(sockaddr_un{}.sun_path))
            return make_error(Errc::invalid_argument,
                              "xenstore socket path too long: " + socket_path);
        if (socket_path.find('\0') != std::string::npos) return bad_string("socket path");
    }

    xs_handle* h = nullptr;
    int open_errno = 0;
    {
        std::lock_guard lock(open_mutex);
        if (socket_path.empty()) {
            h = xs_open(0);
            open_errno = errno;
        } else {
            const char* old = std::getenv("XENSTORED_PATH");
            std::optional<std::string> saved;
            if (old) saved.emplace(old);
            if (::setenv("XENSTORED_PATH", socket_path.c_str(), 1) != 0)
                return make_error(Errc::io, "setenv XENSTORED_PATH failed", errno);
            h = xs_open(0);
            open_errno = errno;
            if (saved) {
                ::setenv("XENSTORED_PATH", saved->c_str(), 1);
            } else {
                ::unsetenv("XENSTORED_PATH");
            }
        }
    }
    const std::string where = socket_path.empty() ? "default xenstore" : socket_path;
    if (!h) return xs_error("open " + where, open_errno);

    // Create the watch pipe now, while nothing is queued: watch_fd() is then a plain getter.
    int fd = xs_fileno(h);
    if (fd < 0) {
        int err = errno;
        xs_close(h);
        return xs_error("watch pipe for " + where, err);
    }
    return std::unique_ptr<Xenstore>(std::make_unique<XenXenstore>(h, fd));
}

} // namespace dpnb::hv
