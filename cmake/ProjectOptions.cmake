# Warning and sanitizer flags for project code, applied per target with dpnb_project_options().
# Third-party headers (DPDK, Xen, spdlog) are included as SYSTEM so -Werror stays on our code.
# No -Wnull-dereference: with GCC 12 at -O2 it fires inside libstdc++ (unique_ptr moves,
# istreambuf_iterator) on correct code, so the release build would break on false positives.
add_library(dpnb_options INTERFACE)
target_compile_options(dpnb_options INTERFACE
  -Wall -Wextra -Wshadow -Wnon-virtual-dtor -Wcast-align -Wunused -Woverloaded-virtual
  -Wformat=2 -Wimplicit-fallthrough
  $<$<BOOL:${DPNB_WERROR}>:-Werror>)
if(DPNB_SANITIZE)
  target_compile_options(dpnb_options INTERFACE
    -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  target_link_options(dpnb_options INTERFACE -fsanitize=address,undefined)
  target_compile_definitions(dpnb_options INTERFACE DPNB_SANITIZE=1)
endif()

function(dpnb_project_options target)
  target_link_libraries(${target} PRIVATE dpnb_options)
endfunction()
