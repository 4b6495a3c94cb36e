// Small owners of operating-system resources used by every part of the simulated
// hypervisor: file descriptors, shared-memory files (memfds) and their mappings.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "dpnb/util/result.hpp"

namespace dpnb::hv::sim {

// An Error for a failed system call, with its errno.
Error sys_error(Errc code, std::string what);

class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept {
        if (this != &other) reset(std::exchange(other.fd_, -1));
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    int release() { return std::exchange(fd_, -1); }
    void reset(int fd = -1);

private:
    int fd_ = -1;
};

// A mapping owned by this object (munmap on destruction).
class Mapping {
public:
    Mapping() = default;
    Mapping(void* addr, std::size_t len) : addr_(addr), len_(len) {}
    Mapping(Mapping&& other) noexcept
        : addr_(std::exchange(other.addr_, nullptr)), len_(std::exchange(other.len_, 0)) {}
    Mapping& operator=(Mapping&& other) noexcept;
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    ~Mapping() { reset(); }

    void reset();
    std::byte* data() const { return static_cast<std::byte*>(addr_); }
    std::size_t size() const { return len_; }
    explicit operator bool() const { return addr_ != nullptr; }
    template <class T>
    T* as() const {
        return static_cast<T*>(addr_);
    }

private:
    void* addr_ = nullptr;
    std::size_t len_ = 0;
};

// A zero-filled memfd of `bytes` bytes, close-on-exec, with sealing allowed.
Result<UniqueFd> create_memfd(const char* name, std::size_t bytes);

// Seals a memfd's size (no shrink, no grow) so that no holder can truncate it under the
// others' mappings (a SIGBUS for them); with `future_write`, also forbids every later
// writable mapping: mappings made before keep their access, new ones can only read.
Status seal_memfd(int fd, bool future_write);

Result<Mapping> map_shared(int fd, std::size_t bytes, bool writable, std::size_t offset = 0);

Result<UniqueFd> create_eventfd();

} // namespace dpnb::hv::sim
