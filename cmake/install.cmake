# Installation (`make install`, `make deb`): the three binaries, the demo image, the
# config, systemd units, man pages and shell completion. Paths under the prefix follow
# it (/usr/local for `make install`, /usr for the .deb); the config is always
# /etc/cyto/cytod.toml, the path cytod reads by default, and is never overwritten.
include(GNUInstallDirs)

install(TARGETS cytod cyto cyto-runtime RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# cytod finds it there (<bindir>/../share/cyto/demo-image) and cyto-runtime next to itself.
install(DIRECTORY "${CYTO_DEMO_IMAGE_DIR}/" DESTINATION ${CMAKE_INSTALL_DATADIR}/cyto/demo-image)
install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})

# The config: copied only when absent (an admin's edits survive `make install`; the
# .deb marks it a conffile, so dpkg asks before replacing it).
install(CODE "
  set(_dest \"\$ENV{DESTDIR}/etc/cyto/cytod.toml\")
  if(EXISTS \"\${_dest}\")
    message(STATUS \"Keeping: \${_dest}\")
  else()
    file(INSTALL \"${CMAKE_SOURCE_DIR}/deploy/cytod.toml\" DESTINATION /etc/cyto)
  endif()")

# Units: ExecStart names cytod under the prefix of this install (known only at install
# time: cpack installs with /usr, `cmake --install --prefix` with another one).
install(CODE "
  set(CYTO_BINDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}\")
  configure_file(\"${CMAKE_SOURCE_DIR}/deploy/systemd/cytod.service.in\"
                 \"${CMAKE_BINARY_DIR}/systemd/cytod.service\" @ONLY)")
install(FILES "${CMAKE_BINARY_DIR}/systemd/cytod.service" deploy/systemd/cytod.socket
        DESTINATION lib/systemd/system)

# Shell completion, generated from the CLI's own command tree.
set(CYTO_COMPLETION_DIR "${CMAKE_BINARY_DIR}/completion")
add_custom_command(
  OUTPUT "${CYTO_COMPLETION_DIR}/cyto" "${CYTO_COMPLETION_DIR}/_cyto"
         "${CYTO_COMPLETION_DIR}/cyto.fish"
  COMMAND ${CMAKE_COMMAND} -E make_directory "${CYTO_COMPLETION_DIR}"
  COMMAND sh -c "$<TARGET_FILE:cyto> completion bash > ${CYTO_COMPLETION_DIR}/cyto"
  COMMAND sh -c "$<TARGET_FILE:cyto> completion zsh > ${CYTO_COMPLETION_DIR}/_cyto"
  COMMAND sh -c "$<TARGET_FILE:cyto> completion fish > ${CYTO_COMPLETION_DIR}/cyto.fish"
  DEPENDS cyto
  COMMENT "Generating bash, zsh and fish completion of cyto"
  VERBATIM)
add_custom_target(completions ALL DEPENDS "${CYTO_COMPLETION_DIR}/cyto")
install(FILES "${CYTO_COMPLETION_DIR}/cyto"
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)
install(FILES "${CYTO_COMPLETION_DIR}/_cyto" DESTINATION ${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions)
install(FILES "${CYTO_COMPLETION_DIR}/cyto.fish"
        DESTINATION ${CMAKE_INSTALL_DATADIR}/fish/vendor_completions.d)

# Man pages from each binary's --help and --version (Debian's help2man).
find_program(HELP2MAN help2man)
set(CYTO_MAN_DIR "${CMAKE_BINARY_DIR}/man")
add_custom_target(man_pages ALL)
if(HELP2MAN)
  set(_man_cyto_section 1)
  set(_man_cyto_summary "run and watch workloads on a cyto node")
  set(_man_cytod_section 8)
  set(_man_cytod_summary "the cyto node daemon")
  set(_man_cyto-runtime_section 8)
  set(_man_cyto-runtime_summary "the OCI runtime of cyto (runc-compatible)")
  foreach(prog cyto cytod cyto-runtime)
    set(section ${_man_${prog}_section})
    set(summary "${_man_${prog}_summary}")
    set(out "${CYTO_MAN_DIR}/${prog}.${section}")
    add_custom_command(OUTPUT "${out}"
      COMMAND ${CMAKE_COMMAND} -E make_directory "${CYTO_MAN_DIR}"
      COMMAND "${HELP2MAN}" --no-info --no-discard-stderr --section=${section}
              "--name=${summary}" "--version-string=${PROJECT_VERSION} (${CYTO_GIT_REVISION})"
              --output=${out} $<TARGET_FILE:${prog}>
      DEPENDS ${prog}
      COMMENT "Man page ${prog}(${section})"
      VERBATIM)
    add_custom_target(man_${prog} DEPENDS "${out}")
    add_dependencies(man_pages man_${prog})
    install(FILES "${out}" DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
  endforeach()
else()
  message(WARNING "help2man not found (deploy/install-deps installs it): no man pages")
endif()

# -- the .deb (`make deb`: cpack -G DEB in the build tree) ------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME cyto)
set(CPACK_PACKAGE_VENDOR "cyto")
set(CPACK_PACKAGE_CONTACT "cyto maintainers <cyto@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "node daemon for cells, containers, images and VMs, with its CLI and OCI runtime")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# DESTDIR installs, so that the absolute /etc/cyto lands in the package too; the prefix
# of that install is CPACK_INSTALL_PREFIX.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Shared libraries of the binaries, found by dpkg-shlibdeps; then the tools cytod runs.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "containernetworking-plugins, iptables, passwd")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "qemu-system-x86, qemu-utils, e2fsprogs")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${CMAKE_SOURCE_DIR}/deploy/debian/postinst;${CMAKE_SOURCE_DIR}/deploy/debian/prerm;${CMAKE_SOURCE_DIR}/deploy/debian/postrm;${CMAKE_SOURCE_DIR}/deploy/debian/conffiles")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# The -g1 line tables stay in the build tree; the package ships stripped binaries.
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGE_DIRECTORY "${CMAKE_BINARY_DIR}/package")
include(CPack)
