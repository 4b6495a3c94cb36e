// dpnb-xen-probe: exercises hypercall-shim's real Xen implementation on a Xen host, one
// operation at a time, for the Xen lab (tests/e2e). Backend commands run in dom0 or a
// driver domain; guest commands (share) in a domU. Typical lab session:
//   domU:  dpnb-xen-probe share --peer 0 --pages 2      (prints refs and an unbound port)
//   dom0:  dpnb-xen-probe info --dom <domU>
//          dpnb-xen-probe map --dom <domU> --ref <ref> --rw
//          dpnb-xen-probe copy --dom <domU> --ref <ref> --len 64
//          dpnb-xen-probe evtchn --dom <domU> --port <port>
//          dpnb-xen-probe persistent --dom <domU> --ref <ref> --ref <ref>
// Exit status 0 when every step did what it should, 1 otherwise; each step prints a line.
// `evtchn` and `share` wait for the peer's notification (--timeout-ms, 0: do not wait) and
// fail without it, so the pair checks event delivery both ways. Page dumps show bytes in
// hex and as text, so that a script can check what the other side wrote.
#include <poll.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "dpnb/hv/xen.hpp"

using namespace dpnb;
using namespace dpnb::hv;

namespace {

int fail(const std::string& step, const Error& e) {
    std::fprintf(stderr, "FAIL %s: %s (%s)\n", step.c_str(), e.describe().c_str(),
                 to_string(e.code));
    return 1;
}

// `n` bytes as text, '.' for what is not printable.
std::string printable(const std::byte* p, std::size_t n) {
    std::string s;
    s.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        const auto c = static_cast<unsigned char>(p[i]);
        s.push_back(std::isprint(c) != 0 ? static_cast<char>(c) : '.');
    }
    return s;
}

// 32 bytes a row: hex, then the same bytes as text between bars.
void hexdump(const std::byte* p, std::size_t n) {
    for (std::size_t row = 0; row < n; row += 32) {
        const std::size_t len = std::min<std::size_t>(32, n - row);
        for (std::size_t i = 0; i < len; ++i)
            std::printf("%02x ", static_cast<unsigned>(p[row + i]));
        std::printf(" |%s|\n", printable(p + row, len).c_str());
    }
}

// What `copy --to-guest` writes: byte i of the copy is 'a' + i % 26.
std::byte pattern_byte(unsigned i) {
    return static_cast<std::byte>('a' + i % 26);
}

// Waits up to `timeout_ms` for a port of `ev` to fire; returns it, or nullopt.
std::optional<EvtchnPort> wait_event(EventChannels& ev, int timeout_ms) {
    pollfd pfd{ev.fd(), POLLIN, 0};
    if (::poll(&pfd, 1, timeout_ms) <= 0) return std::nullopt;
    auto p = ev.pending();
    if (!p) return std::nullopt;
    return *p;
}

int cmd_info(const XenOptions& opts, const std::vector<unsigned>& doms) {
    auto hv = open_xen_backend(opts);
    if (!hv) return fail("open_xen_backend", hv.error());
    std::printf("ok   open_xen_backend: kind=%s self=%u\n", std::string((*hv)->kind()).c_str(),
                unsigned{(*hv)->self()});
    int rc = 0;
    for (unsigned d : doms) {
        auto st = (*hv)->domains().state(static_cast<DomId>(d));
        if (!st) {
            rc |= fail("state(" + std::to_string(d) + ")", st.error());
            continue;
        }
        auto name = (*hv)->domains().name(static_cast<DomId>(d));
        std::printf("ok   dom %u: exists=%d dying=%d shutdown=%d name=%s\n", d, st->exists,
                    st->dying, st->shutdown, name ? name->c_str() : "?");
    }
    return rc;
}

int cmd_map(const XenOptions& opts, DomId dom, const std::vector<unsigned>& refs, bool rw) {
    auto gt = open_xen_grant_table(opts.max_grants_per_handle);
    if (!gt) return fail("open_xen_grant_table", gt.error());
    std::vector<GrantMapRequest> reqs;
    for (unsigned r : refs)
        reqs.push_back({dom, r, rw});
    std::vector<std::int16_t> status(reqs.size());
    GrantMapping m = (*gt)->map(reqs, status);
    if (!m) {
        std::printf("FAIL map of %zu grants; per-grant statuses:", reqs.size());
        for (std::size_t i = 0; i < reqs.size(); ++i)
            std::printf(" ref %u=%d", refs[i], status[i]);
        std::printf("\n");
        return 1;
    }
    std::printf("ok   mapped %u pages at %p (mapped_pages=%llu)\n", m.count,
                static_cast<void*>(m.base), static_cast<unsigned long long>((*gt)->mapped_pages()));
    for (std::uint32_t i = 0; i < m.count; ++i) {
        std::printf("page %u (ref %u):\n", i, refs[i]);
        hexdump(m.page(i), 64);
    }
    if (rw) {
        std::memcpy(m.page(0), "dpnb-xen-probe", 14);
        std::printf("ok   wrote \"dpnb-xen-probe\" at offset 0 of ref %u\n", refs[0]);
    }
    if (Status st = (*gt)->unmap(m); !st) return fail("unmap", st.error());
    std::printf("ok   unmapped (mapped_pages=%llu)\n",
                static_cast<unsigned long long>((*gt)->mapped_pages()));
    return 0;
}

int cmd_copy(const XenOptions& opts, DomId dom, unsigned ref, unsigned offset, unsigned len,
             bool to_guest) {
    auto gt = open_xen_grant_table(opts.max_grants_per_handle);
    if (!gt) return fail("open_xen_grant_table", gt.error());
    std::vector<std::byte> buf(len);
    if (to_guest) {
        for (unsigned i = 0; i < len; ++i)
            buf[i] = pattern_byte(i);
    }
    GrantCopySegment seg =
        to_guest
            ? GrantCopySegment::to_guest(buf.data(), dom, ref, static_cast<std::uint16_t>(offset),
                                         static_cast<std::uint16_t>(len))
            : GrantCopySegment::from_guest(dom, ref, static_cast<std::uint16_t>(offset), buf.data(),
                                           static_cast<std::uint16_t>(len));
    if (Status st = (*gt)->copy(std::span(&seg, 1)); !st) return fail("copy", st.error());
    if (seg.status != netif::gntst::kOkay) {
        std::printf("FAIL copy: GNTST %d\n", seg.status);
        return 1;
    }
    std::printf("ok   copied %u bytes %s ref %u at offset %u%s\n", len, to_guest ? "to" : "from",
                ref, offset, to_guest ? " (abc...z repeated)" : "");
    if (!to_guest) hexdump(buf.data(), buf.size());
    return 0;
}

int cmd_evtchn(DomId dom, unsigned port, int timeout_ms) {
    auto ev = open_xen_event_channels();
    if (!ev) return fail("open_xen_event_channels", ev.error());
    auto local = (*ev)->bind_interdomain(dom, port);
    if (!local) return fail("bind_interdomain", local.error());
    std::printf("ok   bound dom %u port %u to local port %u\n", unsigned{dom}, port, *local);
    // Xen marks a port pending when it binds it (evtchn_bind_interdomain: notifications sent
    // to the unbound port may have been lost). Linux's evtchn masks a port that fired until
    // we unmask it, so this first event must be taken and unmasked, or the peer's answer
    // never reaches us. It may arrive after the ioctl returned (another vCPU's upcall).
    auto first = wait_event(**ev, std::min(timeout_ms, 10000));
    if (first && *first == *local) {
        if (Status st = (*ev)->unmask(*first); !st) return fail("unmask", st.error());
        std::printf("ok   port %u was pending after the bind, as Xen does; unmasked\n", *first);
    } else if (first) {
        std::printf("FAIL event on port %u, not on our port %u\n", *first, *local);
        return 1;
    } else {
        std::printf("note port %u was not pending after the bind\n", *local);
    }
    if (Status st = (*ev)->notify(*local); !st) return fail("notify", st.error());
    int rc = 0;
    if (timeout_ms > 0) {
        std::printf("ok   notified; waiting %d ms for the peer's answer\n", timeout_ms);
        std::fflush(stdout);
        auto got = wait_event(**ev, timeout_ms);
        if (got && *got == *local) {
            std::printf("ok   event on port %u\n", *got);
            (void)(*ev)->unmask(*got);
        } else if (got) {
            std::printf("FAIL event on port %u, not on our port %u\n", *got, *local);
            rc = 1;
        } else {
            std::printf("FAIL no answer from the peer within %d ms\n", timeout_ms);
            rc = 1;
        }
    } else {
        std::printf("ok   notified\n");
    }
    if (Status st = (*ev)->unbind(*local); !st) return fail("unbind", st.error());
    std::printf("ok   unbound\n");
    return rc;
}

int cmd_share(const XenGuestOptions& gopts, unsigned pages, int timeout_ms) {
    auto g = open_xen_guest(gopts);
    if (!g) return fail("open_xen_guest", g.error());
    std::printf("ok   open_xen_guest: self=%u peer=%u\n", unsigned{(*g)->self()},
                unsigned{gopts.peer});
    auto mem = (*g)->alloc_pages(pages);
    if (!mem) return fail("alloc_pages", mem.error());
    std::vector<GrantRef> refs;
    for (std::uint32_t i = 0; i < mem->count; ++i) {
        std::snprintf(reinterpret_cast<char*>(mem->page(i)), 64, "dpnb page %u", i);
        auto ref = (*g)->grant_access(gopts.peer, mem->page(i), !gopts.share_writable);
        if (!ref) return fail("grant_access", ref.error());
        refs.push_back(*ref);
        std::printf("ok   page %u: ref %u\n", i, *ref);
    }
    auto ev = (*g)->open_event_channels();
    if (!ev) return fail("open_event_channels", ev.error());
    auto port = (*ev)->bind_unbound(gopts.peer);
    if (!port) return fail("bind_unbound", port.error());
    std::printf("ok   unbound port %u for dom %u (%s pages); waiting %d ms for a notification\n",
                *port, unsigned{gopts.peer}, gopts.share_writable ? "writable" : "read-only",
                timeout_ms);
    std::fflush(stdout);
    int rc = 0;
    if (timeout_ms > 0) {
        auto got = wait_event(**ev, timeout_ms);
        if (got && *got == *port) {
            (void)(*ev)->unmask(*got);
            if (Status st = (*ev)->notify(*port); !st) return fail("notify", st.error());
            std::printf("ok   event on port %u; answered\n", *got);
        } else {
            std::printf("FAIL no notification on port %u within %d ms\n", *port, timeout_ms);
            rc = 1;
        }
    }
    // What the backend left in the pages (map --rw writes at 0, copy --to-guest anywhere).
    for (std::uint32_t i = 0; i < mem->count; ++i) {
        std::printf("page %u at 0: %s\n", i, printable(mem->page(i), 32).c_str());
        std::printf("page %u at 64: %s\n", i, printable(mem->page(i) + 64, 32).c_str());
        if (Status st = (*g)->end_access(refs[i]); !st) return fail("end_access", st.error());
    }
    if (Status st = (*g)->free_pages(*mem); !st) return fail("free_pages", st.error());
    std::printf("ok   freed\n");
    return rc;
}

int cmd_persistent(const XenOptions& opts, DomId dom, const std::vector<unsigned>& refs) {
    auto hv = open_xen_backend(opts);
    if (!hv) return fail("open_xen_backend", hv.error());
    auto tt = (*hv)->open_translation_table(dom);
    if (!tt) return fail("open_translation_table", tt.error());
    PersistentGrantTable* pg = (*tt)->persistent_grants();
    std::vector<StaticGrant> grants;
    for (unsigned r : refs)
        grants.push_back({r, false});
    std::vector<StaticGrantStatus> st(grants.size());
    if (Status s = pg->add(grants, st); !s) return fail("add", s.error());
    std::printf("ok   added %zu persistent grants (valid_entries=%u)\n", grants.size(),
                pg->valid_entries());
    const TranslationTableView view = pg->view();
    std::byte* page = view.acquire(refs[0], true);
    if (page == nullptr) {
        std::printf("FAIL acquire(%u) missed\n", refs[0]);
        return 1;
    }
    hexdump(page, 32);
    std::vector<GrantRef> del(refs.begin(), refs.end());
    auto busy = pg->remove(std::span(del).first(1), std::span(st).first(1));
    std::printf("%s remove while in flight: %s\n",
                st[0] == StaticGrantStatus::busy ? "ok  " : "FAIL", to_string(st[0]));
    view.release(refs[0]);
    auto removed = pg->remove(del, st);
    if (!removed) return fail("remove", removed.error());
    std::printf("ok   removed %u of %zu\n", *removed, del.size());
    const PersistentGrantCloseReport r = pg->close();
    std::printf("ok   closed: unmapped=%u leaked=%u\n", r.unmapped, r.leaked_in_flight);
    return (busy && *removed == del.size()) ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"Exercise dpnetback's Xen implementation on a Xen host"};
    app.require_subcommand(1);
    XenOptions opts;
    app.add_option("--xenstore", opts.xenstore_path, "xenstored socket (default: libxenstore's)");

    unsigned dom = 0;
    std::vector<unsigned> refs;
    std::vector<unsigned> doms;
    bool rw = false;
    unsigned port = 0;
    unsigned offset = 0;
    unsigned len = 64;
    bool to_guest = false;
    int timeout_ms = 10000;
    unsigned pages = 1;
    unsigned peer = 0;
    bool readonly = false;

    auto* info = app.add_subcommand("info", "open the backend; state and name of domains");
    info->add_option("--dom", doms, "domains to look up");
    auto* map = app.add_subcommand("map", "map grants of a domain, dump them, unmap");
    map->add_option("--dom", dom)->required();
    map->add_option("--ref", refs)->required();
    map->add_flag("--rw", rw, "map writable and write a marker into the first page");
    auto* copy = app.add_subcommand("copy", "grant copy from (or to) one grant");
    copy->add_option("--dom", dom)->required();
    copy->add_option("--ref", refs)->required()->expected(1);
    copy->add_option("--offset", offset);
    copy->add_option("--len", len)->check(CLI::Range(1, 4096));
    copy->add_flag("--to-guest", to_guest, "copy a byte pattern into the grant instead");
    auto* evtchn = app.add_subcommand("evtchn", "bind to a domain's unbound port and notify");
    evtchn->add_option("--dom", dom)->required();
    evtchn->add_option("--port", port)->required();
    evtchn->add_option("--timeout-ms", timeout_ms, "wait for the answer (0: do not)");
    auto* share = app.add_subcommand("share", "guest side: share pages and an unbound port");
    share->add_option("--peer", peer, "backend domain");
    share->add_option("--pages", pages)->check(CLI::Range(1, 1024));
    share->add_option("--timeout-ms", timeout_ms, "wait for a notification (0: do not)");
    share->add_flag("--readonly", readonly, "share the pages read-only");
    auto* persistent = app.add_subcommand("persistent", "persistent-grant table round trip");
    persistent->add_option("--dom", dom)->required();
    persistent->add_option("--ref", refs)->required();

    CLI11_PARSE(app, argc, argv);

    const auto d = static_cast<DomId>(dom);
    if (*info) return cmd_info(opts, doms);
    if (*map) return cmd_map(opts, d, refs, rw);
    if (*copy) return cmd_copy(opts, d, refs.at(0), offset, len, to_guest);
    if (*evtchn) return cmd_evtchn(d, port, timeout_ms);
    if (*share) {
        XenGuestOptions g;
        g.peer = static_cast<DomId>(peer);
        g.share_writable = !readonly;
        g.xenstore_path = opts.xenstore_path;
        return cmd_share(g, pages, timeout_ms);
    }
    if (*persistent) return cmd_persistent(opts, d, refs);
    return 1;
}
