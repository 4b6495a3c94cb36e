// Packets with descriptors, and the client side of the control protocol.
#include "sim/protocol.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace dpnb::hv::sim::proto {

Request make_request(Op op, std::uint64_t a0, std::uint64_t a1, std::uint64_t a2,
                     std::uint64_t a3) {
    Request req{};
    req.magic = kMagic;
    req.op = op;
    req.arg[0] = a0;
    req.arg[1] = a1;
    req.arg[2] = a2;
    req.arg[3] = a3;
    return req;
}

void set_text(char* dst, std::size_t cap, std::string_view text) {
    const std::size_t n = std::min(text.size(), cap - 1);
    std::memcpy(dst, text.data(), n);
    std::memset(dst + n, 0, cap - n);
}

std::string_view get_text(const char* src, std::size_t cap, bool& terminated) {
    const void* nul = std::memchr(src, 0, cap);
    terminated = nul != nullptr;
    if (!terminated) return {};
    return {src, static_cast<std::size_t>(static_cast<const char*>(nul) - src)};
}

Status send_packet(int sock, const void* data, std::size_t len, std::span<const int> fds) {
    if (fds.size() > kMaxFds) return make_error(Errc::internal, "too many descriptors");
    iovec iov{const_cast<void*>(data), len};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
    if (!fds.empty()) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
    }
    for (;;) {
        const ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (n == static_cast<ssize_t>(len)) return ok();
        if (n >= 0) return make_error(Errc::io, "short send");
        if (errno == EINTR) continue;
        if (errno == EPIPE || errno == ECONNRESET)
            return make_error(Errc::closed, "simulated hypervisor connection closed", errno);
        return sys_error(Errc::io, "sendmsg");
    }
}

Result<std::size_t> recv_packet(int sock, void* data, std::size_t cap, std::vector<UniqueFd>& fds) {
    fds.clear();
    iovec iov{data, cap};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n;
    do {
        n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == ECONNRESET) return static_cast<std::size_t>(0);
        return sys_error(Errc::io, "recvmsg");
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            fds.emplace_back(fd);
        }
    }
    if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
        fds.clear();
        return make_error(Errc::protocol, "truncated packet or control message");
    }
    return static_cast<std::size_t>(n);
}

Result<std::shared_ptr<Channel>> Channel::connect(const std::string& dir, Role role, DomId dom,
                                                  Response* hello_reply) {
    const std::string path = dir + "/" + kSocketName;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path))
        return make_error(Errc::invalid_argument, "socket path too long: " + path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (!fd) return sys_error(Errc::io, "socket");
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
        const Errc code = (errno == ENOENT || errno == ECONNREFUSED) ? Errc::not_found : Errc::io;
        return sys_error(code, "connect to the simulated hypervisor at " + path);
    }
    std::shared_ptr<Channel> ch(new Channel(dir, std::move(fd)));
    const std::size_t fds = role == Role::backend ? 1 : role == Role::guest ? 2 : 0;
    auto hello = ch->call(make_request(Op::hello, static_cast<std::uint64_t>(role), dom), fds);
    if (!hello) return std::move(hello).error();
    if (hello_reply != nullptr) *hello_reply = std::move(*hello);
    return ch;
}

Result<Response> Channel::call(const Request& req, std::size_t fds) {
    std::lock_guard lock(mu_);
    if (!fd_) return make_error(Errc::closed, "simulated hypervisor connection closed");
    if (Status st = send_packet(fd_.get(), &req, sizeof(req), {}); !st) return st.error();
    Response rsp{};
    auto n = recv_packet(fd_.get(), &rsp.reply, sizeof(rsp.reply), rsp.fds);
    if (!n) return std::move(n).error();
    if (*n == 0) {
        fd_.reset();
        return make_error(Errc::closed, "simulated hypervisor connection closed");
    }
    bool terminated = false;
    const auto text = get_text(rsp.reply.text, sizeof(rsp.reply.text), terminated);
    if (*n != sizeof(Reply) || rsp.reply.magic != kMagic || rsp.reply.op != req.op || !terminated ||
        rsp.reply.nfds != rsp.fds.size())
        return make_error(Errc::protocol, "malformed reply from the simulated hypervisor");
    if (rsp.reply.status != 0) {
        const int code = rsp.reply.status - 1;
        if (code < 0 || code > static_cast<int>(Errc::internal))
            return make_error(Errc::protocol, "bad status from the simulated hypervisor");
        return make_error(static_cast<Errc>(code), std::string(text), rsp.reply.sys_errno);
    }
    if (rsp.fds.size() != fds)
        return make_error(Errc::protocol, "unexpected descriptors from the simulated hypervisor");
    return rsp;
}

} // namespace dpnb::hv::sim::proto
