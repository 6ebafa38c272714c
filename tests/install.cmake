# install.cmake - `cmake --install --prefix DIR` gives a usable package in DIR: the header,
# the libraries, and a vmstack.pc whose paths point into DIR (not at the prefix configured
# at build time). Included by tests/CMakeLists.txt it adds the test; run with `cmake -P`
# (script mode) it is the test: -DBUILD=<build dir> -DDIR=<scratch prefix>.

if(CMAKE_SCRIPT_MODE_FILE)
  cmake_minimum_required(VERSION 3.20)
  file(REMOVE_RECURSE "${DIR}")
  execute_process(COMMAND ${CMAKE_COMMAND} --install "${BUILD}" --prefix "${DIR}"
    RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "cmake --install --prefix ${DIR} failed (${rc}): ${err}")
  endif()
  file(GLOB_RECURSE pc "${DIR}/*/vmstack.pc")
  if(NOT pc)
    message(FATAL_ERROR "no vmstack.pc under ${DIR}")
  endif()
  get_filename_component(pcdir "${pc}" DIRECTORY)
  find_program(PKG_CONFIG NAMES pkg-config pkgconf)
  if(NOT PKG_CONFIG)
    # Without pkg-config, at least the prefix must not be the configured one.
    file(STRINGS "${pc}" line REGEX "^prefix=")
    if(NOT line MATCHES "pcfiledir")
      message(FATAL_ERROR "${pc}: ${line} does not follow the .pc file's place")
    endif()
    return()
  endif()
  set(ENV{PKG_CONFIG_PATH} "${pcdir}")
  foreach(what cflags-only-I libs-only-L)
    execute_process(COMMAND ${PKG_CONFIG} --${what} vmstack
      RESULT_VARIABLE rc OUTPUT_VARIABLE flag OUTPUT_STRIP_TRAILING_WHITESPACE)
    string(REGEX REPLACE "^-[IL]" "" path "${flag}")
    if(what STREQUAL "cflags-only-I")
      set(want "${path}/vmstack.h")
    else()
      set(want "${path}/libvmstack.a")
    endif()
    if(NOT rc EQUAL 0 OR NOT EXISTS "${want}")
      message(FATAL_ERROR "pkg-config --${what} vmstack gives `${flag}`: no ${want}")
    endif()
  endforeach()
  file(REMOVE_RECURSE "${DIR}")
  return()
endif()

add_test(NAME install.prefix COMMAND ${CMAKE_COMMAND} -DBUILD=${PROJECT_BINARY_DIR}
  -DDIR=${CMAKE_CURRENT_BINARY_DIR}/install-prefix -P ${CMAKE_CURRENT_SOURCE_DIR}/install.cmake)
# One install at a time: examples.installed installs too, and every install rewrites the
# build directory's install_manifest.txt.
set_tests_properties(install.prefix PROPERTIES LABELS unit RESOURCE_LOCK vmstack_install)
