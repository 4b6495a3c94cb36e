// The real xenstore client: dpnb::hv::Xenstore over libxenstore (xenstore.h). It talks to a
// real xenstored (its UNIX socket in dom0, /dev/xen/xenbus in a domU), or to the simulated
// hypervisor's server (dpnb/hv/sim_xenstore_server.hpp), which speaks the same protocol on
// one socket per domain.
//
// Errors: libxenstore's errno becomes Errc: ENOENT not_found, EACCES/EPERM
// permission_denied, EAGAIN again (a transaction conflict: redo it, see run_transaction),
// EEXIST exists, EINVAL and E2BIG invalid_argument, EBUSY busy, ENOSYS unsupported, EBADF,
// EPIPE and ECONNRESET closed (the connection is gone; open a new one), anything else io
// with Error::sys_errno.
//
// Thread safety: every method may be called from several threads at once; libxenstore
// serialises the requests of one connection (one in flight at a time) and delivers watch
// events on its own reader thread. Watch events go to whoever calls read_watch(), so let one
// thread consume them. A connection is not usable in a child after fork(): the child opens
// its own.
//
// Watches: watch_fd() is a pipe that libxenstore makes readable when events are queued.
// After poll() reports it readable, call read_watch() until it returns nullopt: libxenstore
// may clear the fd before the queue is empty. Events for a watch may still arrive after
// unwatch() returned; match them by token and ignore unknown ones. Watch events may also be
// spurious (xenstore's rule), so a handler re-reads the state it cares about.
//
// A lost connection (xenstored or the simulated server went away) does not make watch_fd()
// readable: the next request fails with Errc::closed, and so does read_watch() once
// libxenstore's reader thread has seen the end of the stream. The connection is not
// re-established; open a new one.
#pragma once

#include <memory>
#include <string>

#include "dpnb/hv/xenstore.hpp"

namespace dpnb::hv {

// socket_path empty: libxenstore's default (the XENSTORED_PATH environment variable if set,
// else a real xenstored's socket, else /dev/xen/xenbus in a domU).
// Otherwise: connect to that UNIX socket (the simulated server's per-domain socket).
//
// libxenstore only takes a path from XENSTORED_PATH, read inside xs_open(); with a
// socket_path this sets the variable around xs_open() and restores it, with every open
// serialised on one mutex. Other threads of the process must not read or change the
// environment while an open with a socket_path runs (glibc's getenv is not safe against a
// concurrent setenv); dpnetback opens xenstore from its control thread only.
Result<std::unique_ptr<Xenstore>> open_xenstore(const std::string& socket_path = {});

} // namespace dpnb::hv
