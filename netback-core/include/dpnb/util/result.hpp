// One error type for every control-plane operation: Result<T> holds a value or an Error
// (std::expected is C++23; g++ 12 in C++20 mode does not have it). Data-path code does not
// use this: it returns small verdict enums and never allocates.
#pragma once

#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace dpnb {

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

const char* to_string(Errc code) noexcept;

struct Error {
    Errc code = Errc::internal;
    std::string message;
    int sys_errno = 0; // errno of the failed OS call, 0 if none

    std::string describe() const;
};

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
