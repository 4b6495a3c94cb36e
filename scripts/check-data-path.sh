#!/usr/bin/env bash
# Fails when a data-path source gains an allocating call (docs/datapath.md, "No allocation
# on the data path"). The data path sizes every scratch array from constants, with
# static_asserts that a burst fits; this check keeps it that way: in the files below, outside
# comments and string literals, it refuses operator new, malloc and its kin, make_unique /
# make_shared, growing a container (push_back, emplace_back, emplace, insert, resize,
# reserve, assign, append), standard containers and strings as types, std::to_string,
# fmt::format, and string literals concatenated with +.
#
# Covered: the poll loop's RX and TX stages and the pure protocol code they run per packet.
# Not covered, on purpose: lcore.cpp (commands, attach, the idle sleep, and the cold
# reporting of a disabled vif, which formats into fixed buffers but logs through spdlog),
# engine.cpp and the other control-thread files, guest_pool.cpp (its per-packet functions
# use lists filled to their capacity when the pool is created), ring.hpp and tx_parser.cpp
# (their per-packet parts are allocation-free; attach() and validate() build error texts).
#   scripts/check-data-path.sh [FILE...]    (default: the data-path files)
#   scripts/check-data-path.sh --self-test   (each rule fires on a planted line, comments and
#                                            string literals do not)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--self-test" ]; then
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  cat >"$dir/clean.cpp" <<'CPP'
// new, malloc(, push_back(, std::vector and std::string in a comment are fine
/* so is make_unique over
   several lines */
const char* text = "new buffers are copied; v.push_back(x) + std::string";
char quote = '"';
std::array<int, 4> fixed{}; // a fixed array
int renew = 0, new_idx = 1; // words that contain "new"
std::string_view view;
CPP
  "$0" "$dir/clean.cpp" >/dev/null || { echo "self-test: a clean file was refused"; exit 1; }
  planted=(
    'auto* p = new int(3);'
    'void* b = malloc(64);'
    'void* r = rte_zmalloc("x", 64, 0);'
    'auto u = std::make_unique<int>(1);'
    'frames.push_back(m);'
    'frames.emplace_back(m);'
    'by_key.insert({k, q});'
    'segs.resize(n);'
    'segs.reserve(n);'
    'std::vector<int> v;'
    'std::string reason;'
    'auto t = std::to_string(n);'
    'auto f = fmt::format("{}", n);'
    'const char* s = detail + "x";'
  )
  for line in "${planted[@]}"; do
    printf '%s\n' "$line" >"$dir/planted.cpp"
    if "$0" "$dir/planted.cpp" >/dev/null; then
      echo "self-test: not caught: $line"
      exit 1
    fi
  done
  echo "check-data-path: self-test passed (${#planted[@]} planted allocations caught)"
  exit 0
fi
files=(
  pmd-glue/src/dp_common.hpp
  pmd-glue/src/guest_queue.hpp
  pmd-glue/src/rx_path.cpp
  pmd-glue/src/rx_copy.cpp
  pmd-glue/src/rx_zero_copy.cpp
  pmd-glue/src/tx_path.cpp
  pmd-glue/src/tx_local.cpp
  pmd-glue/src/offload.hpp
  pmd-glue/src/offload.cpp
  netback-core/include/dpnb/netif/rx_builder.hpp
  netback-core/src/rx_builder.cpp
  netback-core/include/dpnb/netif/tx_parser.hpp
  netback-core/include/dpnb/netif/packet_headers.hpp
  netback-core/src/packet_headers.cpp
  netback-core/include/dpnb/netif/ip_filter.hpp
  netback-core/src/ip_filter.cpp
)
[ $# -eq 0 ] || files=("$@")
exec python3 - "${files[@]}" <<'EOF'
import re
import sys

RULES = [
    (r"\bnew\b", "operator new"),
    (r"\b(malloc|calloc|realloc|strdup|aligned_alloc|posix_memalign|rte_malloc|rte_zmalloc"
     r"|rte_calloc|rte_realloc|rte_malloc_socket|rte_zmalloc_socket)\s*\(", "heap allocation"),
    (r"\bmake_(unique|shared)\b", "make_unique / make_shared"),
    (r"\.\s*(push_back|emplace_back|emplace|insert|resize|reserve|assign|append)\s*\(",
     "a container that grows"),
    (r"\bstd::(string|vector|deque|list|forward_list|map|multimap|set|multiset|unordered_map"
     r"|unordered_set|function|ostringstream|stringstream|istringstream)\b",
     "an allocating standard type"),
    (r"\bstd::to_string\b", "std::to_string"),
    (r"\bfmt::format\s*\(", "fmt::format (a std::string)"),
    (r"\"\s*\+|\+\s*\"", "string concatenation"),
]


def strip(text):
    """Blanks comments and the contents of string and character literals, keeping lines."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


bad = 0
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        code = strip(f.read()).split("\n")
    for lineno, line in enumerate(code, 1):
        for pattern, what in RULES:
            if re.search(pattern, line):
                print(f"{path}:{lineno}: {what} on the data path: {line.strip()}")
                bad += 1
if bad:
    print(f"check-data-path: {bad} allocating call(s) in data-path sources "
          "(docs/datapath.md, \"No allocation on the data path\")")
    sys.exit(1)
print(f"check-data-path: {len(sys.argv) - 1} data-path files allocate nothing")
EOF
