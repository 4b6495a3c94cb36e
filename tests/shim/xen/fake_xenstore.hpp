// A Xenstore made of a map, for the Xen tests: read() answers from `nodes`, or with the
// error given in `errors` for a path, or not_found. Everything else is unsupported.
#pragma once

#include <map>
#include <string>

#include "dpnb/hv/xenstore.hpp"

namespace dpnb::hv::test {

class FakeXenstore final : public Xenstore {
public:
    std::map<std::string, std::string, std::less<>> nodes;
    std::map<std::string, Errc, std::less<>> errors;
    int reads = 0;

    Result<std::string> read(XsTxn, std::string_view path) override {
        ++reads;
        if (auto e = errors.find(path); e != errors.end())
            return make_error(e->second, std::string(path));
        if (auto n = nodes.find(path); n != nodes.end()) return n->second;
        return make_error(Errc::not_found, std::string(path));
    }
    Status write(XsTxn, std::string_view, std::string_view) override { return no(); }
    Status mkdir(XsTxn, std::string_view) override { return no(); }
    Status rm(XsTxn, std::string_view) override { return no(); }
    Result<std::vector<std::string>> directory(XsTxn, std::string_view) override { return no(); }
    Result<std::vector<XsPerm>> get_permissions(XsTxn, std::string_view) override { return no(); }
    Status set_permissions(XsTxn, std::string_view, const std::vector<XsPerm>&) override {
        return no();
    }
    Result<XsTxn> transaction_start() override { return no(); }
    Status transaction_end(XsTxn, bool) override { return no(); }
    Status watch(std::string_view, std::string_view) override { return no(); }
    Status unwatch(std::string_view, std::string_view) override { return no(); }
    int watch_fd() const override { return -1; }
    Result<std::optional<XsWatchEvent>> read_watch() override { return no(); }
    Result<std::string> domain_path(DomId dom) override {
        return "/local/domain/" + std::to_string(dom);
    }

private:
    static Error no() { return make_error(Errc::unsupported, "fake xenstore"); }
};

} // namespace dpnb::hv::test
