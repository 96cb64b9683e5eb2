# ebpf/ : kernel programs and their loader, libbpf-bootstrap style.
#   vmlinux.h  <- bpftool btf dump file /sys/kernel/btf/vmlinux format c
#   x.bpf.o    <- clang -target bpf -g -O2 (CO-RE, BTF kept)
#   x.skel.h   <- bpftool gen object (strip DWARF) + bpftool gen skeleton
# Without clang, bpftool, libbpf or the kernel's BTF, cyto_ebpf is built from
# probe_unavailable.cpp: probe::open() returns nullptr with the reason.

set(CYTO_EBPF_GEN "${CMAKE_BINARY_DIR}/gen/ebpf")
find_program(CYTO_CLANG NAMES clang clang-14 clang-15 clang-16)
find_program(CYTO_BPFTOOL bpftool PATHS /usr/sbin /sbin /usr/local/sbin)
pkg_check_modules(LIBBPF IMPORTED_TARGET libbpf>=0.8)
set(CYTO_BTF "/sys/kernel/btf/vmlinux")

set(CYTO_EBPF_MISSING "")
if(NOT CYTO_CLANG)
  list(APPEND CYTO_EBPF_MISSING "clang")
endif()
if(NOT CYTO_BPFTOOL)
  list(APPEND CYTO_EBPF_MISSING "bpftool")
endif()
if(NOT LIBBPF_FOUND)
  list(APPEND CYTO_EBPF_MISSING "libbpf (libbpf-dev)")
endif()
if(NOT EXISTS "${CYTO_BTF}")
  list(APPEND CYTO_EBPF_MISSING "kernel BTF at ${CYTO_BTF}")
endif()

if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  set(CYTO_BPF_ARCH x86)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  set(CYTO_BPF_ARCH arm64)
else()
  list(APPEND CYTO_EBPF_MISSING "a BPF target arch for ${CMAKE_SYSTEM_PROCESSOR}")
endif()

if(NOT CYTO_WITH_EBPF)
  set(CYTO_EBPF_WHY "disabled by -DCYTO_WITH_EBPF=OFF")
elseif(CYTO_EBPF_MISSING)
  string(REPLACE ";" ", " missing "${CYTO_EBPF_MISSING}")
  set(CYTO_EBPF_WHY "missing at build time: ${missing}")
endif()
if(CYTO_EBPF_WHY)
  message(WARNING "eBPF programs NOT built (${CYTO_EBPF_WHY}); "
                  "cytod will run without process events")
  add_library(cyto_ebpf STATIC ebpf/probe_unavailable.cpp)
  target_compile_definitions(cyto_ebpf PRIVATE CYTO_EBPF_UNAVAILABLE="${CYTO_EBPF_WHY}")
  target_include_directories(cyto_ebpf PUBLIC "${CMAKE_SOURCE_DIR}")
  set(CYTO_EBPF_ENABLED OFF)
  return()
endif()

message(STATUS "eBPF programs: clang ${CYTO_CLANG}, bpftool ${CYTO_BPFTOOL}, "
               "libbpf ${LIBBPF_VERSION}, BTF ${CYTO_BTF}")
set(CYTO_EBPF_ENABLED ON)
file(MAKE_DIRECTORY "${CYTO_EBPF_GEN}")

add_custom_command(
  OUTPUT "${CYTO_EBPF_GEN}/vmlinux.h"
  COMMAND sh -c "'${CYTO_BPFTOOL}' btf dump file '${CYTO_BTF}' format c > vmlinux.h.tmp && mv vmlinux.h.tmp vmlinux.h"
  WORKING_DIRECTORY "${CYTO_EBPF_GEN}"
  COMMENT "Generating vmlinux.h from ${CYTO_BTF}"
  VERBATIM)

# cyto_bpf_skeleton(<name>): ebpf/<name>.bpf.c -> gen/ebpf/<name>.skel.h
function(cyto_bpf_skeleton name)
  set(src "${CMAKE_SOURCE_DIR}/ebpf/${name}.bpf.c")
  set(obj "${CYTO_EBPF_GEN}/${name}.bpf.o")
  set(stripped "${CYTO_EBPF_GEN}/${name}.o")
  set(skel "${CYTO_EBPF_GEN}/${name}.skel.h")
  add_custom_command(
    OUTPUT "${obj}"
    COMMAND "${CYTO_CLANG}" -target bpf -g -O2 -Wall -D__TARGET_ARCH_${CYTO_BPF_ARCH}
            -I "${CYTO_EBPF_GEN}" -I "${CMAKE_SOURCE_DIR}/ebpf" -idirafter /usr/include
            -c "${src}" -o "${obj}"
    DEPENDS "${src}" "${CMAKE_SOURCE_DIR}/ebpf/${name}.h" "${CYTO_EBPF_GEN}/vmlinux.h"
    COMMENT "Compiling BPF program ${name}.bpf.c"
    VERBATIM)
  add_custom_command(
    OUTPUT "${skel}"
    COMMAND "${CYTO_BPFTOOL}" gen object "${stripped}" "${obj}"
    COMMAND sh -c "'${CYTO_BPFTOOL}' gen skeleton '${stripped}' name cyto_${name} > '${skel}.tmp' && mv '${skel}.tmp' '${skel}'"
    DEPENDS "${obj}"
    COMMENT "Generating BPF skeleton ${name}.skel.h"
    VERBATIM)
  set(CYTO_BPF_SKELETONS ${CYTO_BPF_SKELETONS} "${skel}" PARENT_SCOPE)
endfunction()

cyto_bpf_skeleton(events)

add_library(cyto_ebpf STATIC ebpf/probe.cpp ${CYTO_BPF_SKELETONS})
target_include_directories(cyto_ebpf PUBLIC "${CMAKE_SOURCE_DIR}" PRIVATE "${CYTO_EBPF_GEN}")
# cyto_bus for its logger registry only (spdlog); nothing of CAF is used here.
target_link_libraries(cyto_ebpf PUBLIC PkgConfig::LIBBPF PRIVATE cyto_bus)
