# Fuzz targets (libFuzzer, clang from Debian), in the sanitizer tree when it is built with
# clang (`make sanitize` / `make fuzz`: build-asan/, -DCYTO_SANITIZE=ON with clang++).
# Every library there already carries ASan + UBSan and libFuzzer's coverage
# (-fsanitize=fuzzer-no-link); a target is its harness tests/fuzz/<name>_fuzz.cpp linked
# with libFuzzer's main and the library whose parser it feeds.
add_custom_target(fuzz_targets)
function(cyto_fuzz name)
  cmake_parse_arguments(F "" "" "LIBS" ${ARGN})
  add_executable(fuzz_${name} tests/fuzz/${name}_fuzz.cpp)
  target_include_directories(fuzz_${name} PRIVATE "${CMAKE_SOURCE_DIR}" "${CYTO_GEN_DIR}")
  target_link_libraries(fuzz_${name} PRIVATE ${F_LIBS})
  target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
  add_dependencies(fuzz_targets fuzz_${name})
endfunction()

cyto_fuzz(reference LIBS cyto_images)
cyto_fuzz(manifest LIBS cyto_images)
cyto_fuzz(tar_layer LIBS cyto_images)
cyto_fuzz(oci_config LIBS cyto_runtime)
cyto_fuzz(cni_result LIBS cyto_network)
cyto_fuzz(toml_config LIBS cyto_services)
cyto_fuzz(units LIBS cyto_cli_units)
# The gateway: the real cyto::services::gateway on an in-memory pipe, with a real actor
# system and the bus registry.
cyto_fuzz(gateway LIBS cyto_services)
