// Xenstore names and permission strings as xenstored parses them (docs/misc/xenstore.txt):
// node paths, relative paths, parent/child relations, domain ids and "r<domid>"-style
// permission entries. Everything here validates input that comes straight off the wire
// from a possibly hostile guest, so every function is total: it returns nullopt/false on
// malformed input and never reads past the string it was given.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dpnb/hv/types.hpp"

namespace dpnb::hv::sim::xs {

// Limits of xen/io/xs_wire.h, repeated here so that this header does not drag in Xen's.
inline constexpr std::size_t kPayloadMax = 4096;     // XENSTORE_PAYLOAD_MAX
inline constexpr std::size_t kAbsPathMax = 3072;     // XENSTORE_ABS_PATH_MAX
inline constexpr std::size_t kRelPathMax = 2048;     // XENSTORE_REL_PATH_MAX
inline constexpr DomId kDomIdFirstReserved = 0x7FF0; // DOMID_FIRST_RESERVED

// Permission bits of one entry (xenstore_lib.h XS_PERM_*). OWNER is never on the wire: it is
// what perm_for() adds for the node's owner and for privileged callers.
inline constexpr std::uint8_t kPermNone = 0x00;
inline constexpr std::uint8_t kPermRead = 0x01;
inline constexpr std::uint8_t kPermWrite = 0x02;
inline constexpr std::uint8_t kPermOwner = 0x08;

struct Perm {
    DomId id = 0;
    std::uint8_t bits = kPermNone; // kPermRead | kPermWrite
    bool operator==(const Perm&) const = default;
};

// First entry: owner, and the access of every domain not listed after it.
using PermList = std::vector<Perm>;

// Absolute node path as xenstored accepts it: starts with '/', only [A-Za-z0-9-/_@], no
// "//", no trailing '/' (except "/" itself), at most kAbsPathMax bytes.
bool is_valid_node_path(std::string_view path);

// "@introduceDomain", "@releaseDomain", ...: names of special watches, never nodes.
inline bool is_special_path(std::string_view path) {
    return !path.empty() && path.front() == '@';
}

// /local/domain/<dom>: the home folder that relative paths of `dom` are relative to.
std::string home_path(DomId dom);

// Turns a path from a request of domain `dom` into an absolute, valid node path. A path not
// starting with '/' is relative to home_path(dom) and may be at most kRelPathMax bytes.
// nullopt: invalid (the caller answers EINVAL).
std::optional<std::string> canonical_node_path(std::string_view path, DomId dom);

// "/a/b" -> "/a", "/a" -> "/". `path` must be a valid node path other than "/".
std::string_view parent_of(std::string_view path);
// "/a/b" -> "b". `path` must be a valid node path other than "/".
std::string_view basename_of(std::string_view path);
// "/" + name or parent + "/" + name.
std::string child_path(std::string_view parent, std::string_view name);

// True when `child` is `parent` or lies below it, or `parent` is "/" (xenstored's is_child,
// which also lets a watch on "/" see special events).
bool is_child(std::string_view child, std::string_view parent);

// Decimal domain id 0..65535, digits only. Unlike xenstored (atoi) we refuse junk.
std::optional<DomId> parse_domid(std::string_view text);
// Decimal unsigned 32-bit number, digits only.
std::optional<std::uint32_t> parse_u32(std::string_view text);

// One permission string: 'n', 'r', 'w' or 'b' followed by a domain id.
std::optional<Perm> parse_perm(std::string_view text);
std::string format_perm(Perm perm);

// Splits a payload into its nul-terminated strings. Bytes after the last nul are not a
// string (xenstored's get_strings ignores them too) and are reported through `trailing`.
std::vector<std::string_view> split_strings(std::string_view payload,
                                            std::size_t* trailing = nullptr);

} // namespace dpnb::hv::sim::xs
