// Failure-reason tables: an X-macro list turned into an array of records with an `error`
// member, in the order of an enum whose first value, `none` (0), is not in the table. The
// order check and the lookup every such table (TX parser, control ring) shares.
#pragma once

#include <cstddef>

namespace dpnb {

template <class Info, std::size_t N>
constexpr bool reasons_in_enum_order(const Info (&table)[N]) noexcept {
    for (std::size_t i = 0; i < N; ++i)
        if (static_cast<std::size_t>(table[i].error) != i + 1) return false;
    return true;
}

// The record of `error`, or nullptr for `none` and values past the table.
template <class Info, std::size_t N, class E>
constexpr const Info* find_reason(const Info (&table)[N], E error) noexcept {
    const auto n = static_cast<std::size_t>(error);
    if (n == 0 || n > N) return nullptr;
    return &table[n - 1];
}

} // namespace dpnb
