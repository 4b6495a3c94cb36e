// Helpers shared by every Xenstore implementation.
#include "dpnb/hv/xenstore.hpp"

namespace dpnb::hv {

Status run_transaction(Xenstore& xs, const std::function<Status(XsTxn)>& body, int max_attempts) {
    for (int attempt = 0; attempt < max_attempts; ++attempt) {
        auto txn = xs.transaction_start();
        if (!txn) return txn.error();
        Status st = body(*txn);
        if (!st) {
            (void)xs.transaction_end(*txn, false);
            return st;
        }
        Status end = xs.transaction_end(*txn, true);
        if (end) return end;
        if (end.error().code != Errc::again) return end;
    }
    return make_error(Errc::again, "xenstore transaction still conflicting after " +
                                       std::to_string(max_attempts) + " attempts");
}

} // namespace dpnb::hv
