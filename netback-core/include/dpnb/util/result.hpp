// One error type for every control-plane operation: Result<T> holds a value or an Error
// (std::expected is C++23; g++ 12 in C++20 mode does not have it). Data-path code does not
// use this: it returns small verdict enums and never allocates.
#pragma once

#include <array>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace dpnb {

// Each code has a row in errc_table() (name, text, errno); internal stays the last code.
enum class Errc {
    invalid_argument,  // a value that is malformed or out of range
    not_found,         // no such key, domain, vif, grant, port
    permission_denied, // the peer or the caller is not allowed to do this
    exists,            // already attached, already bound
    again,             // transient: retry (xenstore transaction conflict, EAGAIN)
    busy,              // in use: e.g. a grant still mapped or counted in flight
    protocol,          // the peer broke the protocol
    unsupported,       // a feature this build or this backend does not have
    io,                // an OS call failed; see Error::sys_errno
    closed,            // the peer or the connection went away
    internal,          // a bug in dpnetback; logged loudly
};

// Every code's name (the management protocol's wire code), text (log lines, CLI messages)
// and errno (what a peer that speaks errno is told, e.g. a xenbus error node), in one table
// (result.cpp), in enum order.
struct ErrcInfo {
    Errc code;
    std::string_view name;
    std::string_view text;
    int sys_errno;
    // Further errnos that mean this code when an OS or library call fails (0: none).
    std::array<int, 2> also_from{};
};
std::span<const ErrcInfo> errc_table() noexcept;
const ErrcInfo& errc_info(Errc code) noexcept;

const char* to_string(Errc code) noexcept; // the text
std::string_view errc_name(Errc code) noexcept;
int to_errno(Errc code) noexcept;
// The code that `err` (an errno) means, from the table; Errc::io for an errno no row claims.
Errc errc_from_errno(int err) noexcept;

struct Error {
    Errc code = Errc::internal;
    std::string message;
    int sys_errno = 0; // errno of the failed OS call, 0 if none

    std::string describe() const;
};

// The errno a peer is told about `e`: the failed call's own errno, or its code's.
int to_errno(const Error& e) noexcept;

inline Error make_error(Errc code, std::string message, int sys_errno = 0) {
    return Error{code, std::move(message), sys_errno};
}

template <class T>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
    Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

    bool has_value() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return has_value(); }

    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const Error& error() const& { return std::get<1>(v_); }
    Error&& error() && { return std::get<1>(std::move(v_)); }

    template <class U>
    T value_or(U&& fallback) const& {
        return has_value() ? value() : static_cast<T>(std::forward<U>(fallback));
    }

private:
    std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error error) : error_(std::move(error)), ok_(false) {}

    bool has_value() const noexcept { return ok_; }
    explicit operator bool() const noexcept { return ok_; }
    const Error& error() const& { return error_; }
    Error&& error() && { return std::move(error_); }

private:
    Error error_;
    bool ok_ = true;
};

using Status = Result<void>;

inline Status ok() {
    return {};
}

} // namespace dpnb
