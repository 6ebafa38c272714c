# script_common.cmake - what the `cmake -P` test scripts examples.cmake and
# build_variants.cmake share, included by them in script mode. Both functions fail through
# the caller's `fail` (which prints the caller's `out`).
#
# install_package(<build dir> <prefix>): empties the prefix, installs the build there with
# `cmake --install`, points PKG_CONFIG_PATH at the installed vmstack.pc and sets PKG_CONFIG
# (the pkg-config program) in the caller.
function(install_package build dir)
  file(REMOVE_RECURSE "${dir}")
  execute_process(COMMAND ${CMAKE_COMMAND} --install "${build}" --prefix "${dir}"
    RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    fail("cmake --install --prefix ${dir} failed (${rc})")
  endif()
  file(GLOB_RECURSE pc "${dir}/*/vmstack.pc")
  find_program(PKG_CONFIG NAMES pkg-config pkgconf)
  if(NOT pc OR NOT PKG_CONFIG)
    message(FATAL_ERROR "no vmstack.pc under ${dir} (`${pc}`), or no pkg-config (`${PKG_CONFIG}`)")
  endif()
  get_filename_component(pcdir "${pc}" DIRECTORY)
  set(ENV{PKG_CONFIG_PATH} "${pcdir}")
  set(PKG_CONFIG "${PKG_CONFIG}" PARENT_SCOPE)
endfunction()

#   check_output(RC <result> EXPECT <exit status|SIGSEGV> [WHAT <name>]
#                [MATCH <regex...>] [NOMATCH <regex...>])
# RC is execute_process's RESULT_VARIABLE; each MATCH regex must be found after the
# previous one's match, no NOMATCH regex anywhere. Reads the caller's `out` (the output),
# WHAT first in a failure's message when given.
function(check_output)
  cmake_parse_arguments(C "" "RC;EXPECT;WHAT" "MATCH;NOMATCH" ${ARGN})
  set(w "")
  if(C_WHAT)
    set(w "${C_WHAT}: ")
  endif()
  if(C_EXPECT STREQUAL "SIGSEGV")
    # execute_process describes a death by a signal in words.
    if(NOT C_RC STREQUAL "Segmentation fault")
      fail("${w}expected a death by SIGSEGV, got `${C_RC}`")
    endif()
  elseif(NOT C_RC STREQUAL "${C_EXPECT}")
    fail("${w}expected exit status ${C_EXPECT}, got `${C_RC}`")
  endif()
  set(rest "${out}")
  foreach(re ${C_MATCH})
    string(REGEX MATCH "${re}" hit "${rest}")
    if(hit STREQUAL "")
      fail("${w}expected a match of `${re}` (after the previous pattern's match)")
    endif()
    string(FIND "${rest}" "${hit}" at)
    string(LENGTH "${hit}" len)
    math(EXPR at "${at} + ${len}")
    string(SUBSTRING "${rest}" ${at} -1 rest)
  endforeach()
  foreach(re ${C_NOMATCH})
    if(out MATCHES "${re}")
      fail("${w}did not expect a match of `${re}`")
    endif()
  endforeach()
endfunction()
