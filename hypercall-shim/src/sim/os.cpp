// File descriptors, memfds and mappings for the simulated hypervisor.
#include "sim/os.hpp"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

namespace dpnb::hv::sim {

Error sys_error(Errc code, std::string what) {
    const int err = errno;
    return make_error(code, std::move(what), err);
}

void UniqueFd::reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

Mapping& Mapping::operator=(Mapping&& other) noexcept {
    if (this != &other) {
        reset();
        addr_ = std::exchange(other.addr_, nullptr);
        len_ = std::exchange(other.len_, 0);
    }
    return *this;
}

void Mapping::reset() {
    if (addr_ != nullptr) ::munmap(addr_, len_);
    addr_ = nullptr;
    len_ = 0;
}

Result<UniqueFd> create_memfd(const char* name, std::size_t bytes) {
    UniqueFd fd(::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd) return sys_error(Errc::io, std::string("memfd_create ") + name);
    if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0)
        return sys_error(Errc::io, std::string("ftruncate ") + name);
    return fd;
}

Status seal_memfd(int fd, bool future_write) {
    int seals = F_SEAL_SHRINK | F_SEAL_GROW;
    if (future_write) seals |= F_SEAL_FUTURE_WRITE;
    if (::fcntl(fd, F_ADD_SEALS, seals) != 0) return sys_error(Errc::io, "seal memfd");
    return ok();
}

Result<Mapping> map_shared(int fd, std::size_t bytes, bool writable, std::size_t offset) {
    const int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    void* addr = ::mmap(nullptr, bytes, prot, MAP_SHARED, fd, static_cast<off_t>(offset));
    if (addr == MAP_FAILED) return sys_error(Errc::io, "mmap shared memory");
    return Mapping(addr, bytes);
}

Result<UniqueFd> create_eventfd() {
    UniqueFd fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!fd) return sys_error(Errc::io, "eventfd");
    return fd;
}

} // namespace dpnb::hv::sim
