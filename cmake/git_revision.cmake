# CYTO_GIT_REVISION: the commit being built (cyto --version, cytod --version). Set it on
# the command line for a build outside git (a source package); otherwise read from git
# and read again whenever HEAD or the branch it names moves (CMake re-runs itself then).
if(NOT DEFINED CYTO_GIT_REVISION OR CYTO_GIT_REVISION STREQUAL "" OR CYTO_GIT_REVISION_AUTO)
  set(CYTO_GIT_REVISION "unknown")
  find_program(GIT_PROGRAM git)
  if(GIT_PROGRAM)
    execute_process(COMMAND "${GIT_PROGRAM}" rev-parse --short=12 HEAD
                    WORKING_DIRECTORY "${CMAKE_SOURCE_DIR}"
                    OUTPUT_VARIABLE _rev OUTPUT_STRIP_TRAILING_WHITESPACE
                    RESULT_VARIABLE _rc ERROR_QUIET)
    if(_rc EQUAL 0 AND _rev)
      set(CYTO_GIT_REVISION "${_rev}")
      # Files whose change means HEAD moved: HEAD itself, the branch ref, packed refs.
      execute_process(COMMAND "${GIT_PROGRAM}" rev-parse --absolute-git-dir
                      WORKING_DIRECTORY "${CMAKE_SOURCE_DIR}"
                      OUTPUT_VARIABLE _gitdir OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
      execute_process(COMMAND "${GIT_PROGRAM}" rev-parse --symbolic-full-name HEAD
                      WORKING_DIRECTORY "${CMAKE_SOURCE_DIR}"
                      OUTPUT_VARIABLE _ref OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
      execute_process(COMMAND "${GIT_PROGRAM}" rev-parse --git-common-dir
                      WORKING_DIRECTORY "${CMAKE_SOURCE_DIR}"
                      OUTPUT_VARIABLE _common OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
      get_filename_component(_common "${_common}" ABSOLUTE BASE_DIR "${CMAKE_SOURCE_DIR}")
      set(_watch "${_gitdir}/HEAD")
      if(_ref AND EXISTS "${_common}/${_ref}")
        list(APPEND _watch "${_common}/${_ref}")
      endif()
      if(EXISTS "${_common}/packed-refs")
        list(APPEND _watch "${_common}/packed-refs")
      endif()
      set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_watch})
    endif()
  endif()
  set(CYTO_GIT_REVISION_AUTO ON CACHE INTERNAL "CYTO_GIT_REVISION comes from git")
endif()
message(STATUS "cyto ${PROJECT_VERSION}, revision ${CYTO_GIT_REVISION}")
