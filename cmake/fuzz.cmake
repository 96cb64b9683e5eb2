# Fuzz targets (libFuzzer, clang from Debian): a build tree of their own, configured with
#   -DCYTO_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang
# (`make fuzz` does that and runs each target on its corpus under tests/fuzz/corpus/).
# Only the parsers under test are compiled, with ASan + UBSan and fuzzer coverage.
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "CYTO_FUZZ needs clang (libFuzzer): -DCMAKE_CXX_COMPILER=clang++")
endif()
add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                    -fno-omit-frame-pointer -g -O1)
add_link_options(-fsanitize=fuzzer,address,undefined)

add_custom_target(fuzz_targets)
# cyto_fuzz(<name> SOURCES ... LIBS ...): tests/fuzz/<name>_fuzz.cpp + the code it parses.
function(cyto_fuzz name)
  cmake_parse_arguments(F "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(fuzz_${name} tests/fuzz/${name}_fuzz.cpp ${F_SOURCES})
  target_include_directories(fuzz_${name} PRIVATE "${CMAKE_SOURCE_DIR}" "${CYTO_GEN_DIR}")
  target_link_libraries(fuzz_${name} PRIVATE ${F_LIBS})
  add_dependencies(fuzz_targets fuzz_${name})
endfunction()

# Code several targets share, compiled once.
add_library(cyto_fuzz_errc STATIC bus/errc.cpp)
target_include_directories(cyto_fuzz_errc PUBLIC "${CMAKE_SOURCE_DIR}")
target_link_libraries(cyto_fuzz_errc PUBLIC CAF::core)
add_library(cyto_fuzz_images STATIC actors/images/reference.cpp actors/images/content_store.cpp)
target_link_libraries(cyto_fuzz_images PUBLIC cyto_fuzz_errc OpenSSL::Crypto)

cyto_fuzz(reference LIBS cyto_fuzz_images)
cyto_fuzz(manifest SOURCES actors/images/manifest.cpp
          LIBS cyto_fuzz_images nlohmann_json::nlohmann_json)
cyto_fuzz(tar_layer SOURCES actors/images/unpack.cpp
          LIBS cyto_fuzz_images LibArchive::LibArchive)
cyto_fuzz(oci_config SOURCES actors/containers/oci_spec.cpp
          LIBS nlohmann_json::nlohmann_json PkgConfig::LIBCAP PkgConfig::LIBSECCOMP)
cyto_fuzz(cni_result SOURCES actors/network/cni.cpp bus/logging.cpp
          LIBS cyto_fuzz_errc nlohmann_json::nlohmann_json spdlog::spdlog fmt::fmt)
cyto_fuzz(toml_config SOURCES services/config.cpp bus/federation_actor.cpp bus/node_identity.cpp
          bus/internal.cpp bus/logging.cpp bus/tls_error_queue.cpp
          LIBS cyto_fuzz_errc tomlplusplus::tomlplusplus spdlog::spdlog fmt::fmt CAF::io
               CAF::openssl OpenSSL::SSL)
cyto_fuzz(units SOURCES cli/units.cpp)

# The gateway: the real cyto::services::gateway on an in-memory pipe, with a real actor
# system and the bus registry. Needs the schema code and the services library, built
# here with the fuzz flags.
set(CAPNPC_SRC_PREFIX "${CMAKE_SOURCE_DIR}")
set(CAPNPC_OUTPUT_DIR "${CYTO_GEN_DIR}")
file(GLOB CYTO_FUZZ_SCHEMAS CONFIGURE_DEPENDS "${CMAKE_SOURCE_DIR}/schema/*.capnp")
capnp_generate_cpp(CYTO_FUZZ_SCHEMA_SRCS CYTO_FUZZ_SCHEMA_HDRS ${CYTO_FUZZ_SCHEMAS})
add_library(cyto_fuzz_schema STATIC ${CYTO_FUZZ_SCHEMA_SRCS})
target_include_directories(cyto_fuzz_schema PUBLIC "${CYTO_GEN_DIR}")
target_link_libraries(cyto_fuzz_schema PUBLIC CapnProto::capnp-rpc CapnProto::kj-async)
# Generated code the fuzzer does not aim at: no sanitizers, no coverage, no debug info, so
# the tree builds in minutes (it is most of the gateway target's compile time).
target_compile_options(cyto_fuzz_schema PRIVATE -w -fno-sanitize=all -O0 -g0)
add_library(cyto_fuzz_gateway STATIC
  bus/federation_actor.cpp bus/internal.cpp bus/logging.cpp bus/node_identity.cpp bus/registry.cpp
  bus/tls_error_queue.cpp bus/topics.cpp bus/types.cpp
  services/access_policy.cpp services/authorizer.cpp services/bridge.cpp
  services/cells_service.cpp services/containers_service.cpp services/discovery_service.cpp
  services/errors.cpp services/gateway.cpp services/images_service.cpp
  services/message_stream.cpp services/network_service.cpp services/observe_service.cpp
  services/tls_stream.cpp services/vm_channel.cpp services/vm_links.cpp services/vms_service.cpp)
target_include_directories(cyto_fuzz_gateway PUBLIC "${CMAKE_SOURCE_DIR}" "${CYTO_GEN_DIR}")
target_link_libraries(cyto_fuzz_gateway PUBLIC cyto_fuzz_errc cyto_fuzz_schema spdlog::spdlog
                      fmt::fmt tomlplusplus::tomlplusplus CAF::io CAF::openssl OpenSSL::SSL
                      Threads::Threads)
# The bus and services under the gateway keep ASan/UBSan and coverage, at -O0 with line
# tables only: the smoke pass of `make test` builds them cold on CI.
target_compile_options(cyto_fuzz_gateway PRIVATE -O0 -gline-tables-only)
cyto_fuzz(gateway LIBS cyto_fuzz_gateway)
# CAF 0.17's spawn of a function-based actor without arguments binds a reference to its
# null argument tuple (caf/detail/init_fun_factory.hpp, *shared_ptr<std::tuple<>>): UB
# of CAF's header, harmless, and instantiated in the target's own file (the registry).
set_source_files_properties(tests/fuzz/gateway_fuzz.cpp PROPERTIES COMPILE_OPTIONS -fno-sanitize=null)
