# package.cmake - the installed package as a user's build sees it (`cmake --install
# --prefix DIR`):
#   - vmstack.pc and the CMake package agree: every library in vmstack::vmstack_static's
#     link interface (Threads, dl, gcc_s, unwind, iberty) is in `pkg-config --static
#     --libs vmstack` (-lgcc_s before -lunwind), and every compile option of the
#     targets is in `pkg-config --cflags vmstack`;
#   - find_package(vmstack) works: a project builds examples/usage.c with
#     vmstack::vmstack and with vmstack::vmstack_static (-Wall -Wextra -Werror), and both
#     programs run (the static one without libvmstack.so);
#   - vmstack.h's VMSTACK_VERSION_* and vmstack.pc's Version are the project's (the
#     package's, which find_package(vmstack <version> EXACT) checks);
#   - libvmstack.so has the soname libvmstack.so.<major> and exports only vms_ names,
#     and libvmstack.a defines no global symbol outside vms_ (nothing that could clash
#     with a user's own names; ASan's ODR indicators of vms_ names, __odr_asan.vms_*, too).
#
# Included by tests/CMakeLists.txt it adds the case install.package (label unit). Run
# with `cmake -P` (script mode) it is the case: -DBUILD=<build dir> -DDIR=<scratch
# prefix> -DSRC=<examples/usage.c> -DCC=<compiler> -DGEN=<generator> -DNM=<nm>
# -DREADELF=<readelf> -DCFLAGS=<extra compile and link flags, a list> -DVERSION=<version>
# -DSOVERSION=<soversion>.

if(CMAKE_SCRIPT_MODE_FILE)
  cmake_minimum_required(VERSION 3.20)

  function(fail why)
    message(FATAL_ERROR "${why}\n---- output ----\n${out}----")
  endfunction()
  include("${CMAKE_CURRENT_LIST_DIR}/script_common.cmake")

  install_package("${BUILD}" "${DIR}")
  file(GLOB_RECURSE targets "${DIR}/*/cmake/vmstack/vmstackTargets.cmake")
  file(GLOB_RECURSE so "${DIR}/*/libvmstack.so")
  file(GLOB_RECURSE ar "${DIR}/*/libvmstack.a")
  if(NOT targets OR NOT so OR NOT ar)
    fail("no vmstackTargets.cmake, libvmstack.so or libvmstack.a under ${DIR}")
  endif()
  get_filename_component(cmakedir "${targets}" DIRECTORY)

  foreach(q "--static;--libs" "--cflags")
    execute_process(COMMAND ${PKG_CONFIG} ${q} vmstack RESULT_VARIABLE rc
      OUTPUT_VARIABLE pc OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
      fail("pkg-config ${q} vmstack failed (${rc})")
    endif()
    separate_arguments(pc UNIX_COMMAND "${pc}")
    if(q MATCHES "libs")
      set(pc_libs ${pc})
    else()
      set(pc_cflags ${pc})
    endif()
  endforeach()

  # ---- the CMake package's link interface, as pkg-config --static says it -------------
  file(READ "${targets}" text)
  foreach(t vmstack vmstack_static)
    string(REGEX MATCH "set_target_properties\\(vmstack::${t} PROPERTIES[^)]*\\)" block "${text}")
    if(NOT block)
      fail("${targets}: no properties of vmstack::${t}")
    endif()
    foreach(prop INTERFACE_LINK_LIBRARIES INTERFACE_COMPILE_OPTIONS)
      set(${t}_${prop})
      if(block MATCHES "${prop} \"([^\"]*)\"")
        set(${t}_${prop} "${CMAKE_MATCH_1}")
      endif()
    endforeach()
  endforeach()
  foreach(lib ${vmstack_static_INTERFACE_LINK_LIBRARIES})
    string(REGEX REPLACE "^\\$<LINK_ONLY:(.*)>$" "\\1" lib "${lib}")
    if(lib STREQUAL "Threads::Threads")
      set(want "-pthread|-lpthread")
    elseif(lib MATCHES "^-l(.+)$")
      set(want "-l${CMAKE_MATCH_1}")
    elseif(lib MATCHES "/lib([^/]+)\\.(so|a)(\\.[0-9.]+)?$")
      set(want "-l${CMAKE_MATCH_1}")
    elseif(lib MATCHES "^[A-Za-z0-9_+.-]+$")
      set(want "-l${lib}")
    else()
      fail("vmstack::vmstack_static links `${lib}`: unknown to this test")
    endif()
    set(found -1)
    set(i 0)
    foreach(flag ${pc_libs})
      if(flag MATCHES "^(${want})$" AND found LESS 0)
        set(found ${i})
      endif()
      math(EXPR i "${i} + 1")
    endforeach()
    if(found LESS 0)
      fail("vmstack::vmstack_static links `${lib}`, but `pkg-config --static --libs vmstack` (${pc_libs}) has no ${want}")
    endif()
    set(at_${want} ${found})
  endforeach()
  # libgcc's unwinder first, also in a static link (docs/api.md, C++).
  if(DEFINED at_-lunwind AND DEFINED at_-lgcc_s AND NOT at_-lgcc_s LESS at_-lunwind)
    fail("`pkg-config --static --libs vmstack` (${pc_libs}) does not have -lgcc_s before -lunwind")
  endif()
  foreach(t vmstack vmstack_static)
    foreach(opt ${${t}_INTERFACE_COMPILE_OPTIONS})
      if(NOT opt IN_LIST pc_cflags)
        fail("vmstack::${t} compiles its users with ${opt}, `pkg-config --cflags vmstack` (${pc_cflags}) does not")
      endif()
    endforeach()
  endforeach()

  # ---- find_package(vmstack): shared and static -----------------------------------------
  set(proj "${DIR}/consumer")
  file(MAKE_DIRECTORY "${proj}")
  file(COPY "${SRC}" DESTINATION "${proj}")
  string(REPLACE ";" " " flags "${CFLAGS}")
  file(WRITE "${proj}/CMakeLists.txt" "
cmake_minimum_required(VERSION 3.20)
project(consumer C)
find_package(vmstack ${VERSION} EXACT REQUIRED)
foreach(kind vmstack vmstack_static)
  add_executable(usage_\${kind} usage.c)
  target_compile_options(usage_\${kind} PRIVATE -Wall -Wextra -Werror)
  target_link_libraries(usage_\${kind} PRIVATE vmstack::\${kind})
endforeach()
")
  execute_process(COMMAND ${CMAKE_COMMAND} -S "${proj}" -B "${proj}/build" -G "${GEN}"
    "-DCMAKE_PREFIX_PATH=${DIR}" "-DCMAKE_C_COMPILER=${CC}" "-DCMAKE_C_FLAGS=${flags}"
    "-DCMAKE_EXE_LINKER_FLAGS=${flags}" -DCMAKE_BUILD_TYPE=Release
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    fail("find_package(vmstack): configuring a project against ${DIR} failed (${rc})")
  endif()
  execute_process(COMMAND ${CMAKE_COMMAND} --build "${proj}/build"
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    fail("find_package(vmstack): building usage.c with vmstack::vmstack and vmstack::vmstack_static failed (${rc})")
  endif()
  foreach(kind vmstack vmstack_static)
    execute_process(COMMAND "${proj}/build/usage_${kind}" RESULT_VARIABLE rc
      OUTPUT_VARIABLE out ERROR_VARIABLE out)
    check_output(RC "${rc}" EXPECT 0 WHAT "usage built with vmstack::${kind}"
      MATCH "usage: OK")
  endforeach()
  execute_process(COMMAND ${READELF} -d "${proj}/build/usage_vmstack_static"
    OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(out MATCHES "libvmstack")
    fail("usage built with vmstack::vmstack_static needs libvmstack.so")
  endif()

  # ---- versions: the header's, vmstack.pc's, the package's --------------------------------
  file(GLOB_RECURSE header "${DIR}/*/vmstack.h")
  file(STRINGS "${header}" lines REGEX "^#define VMSTACK_VERSION_(MAJOR|MINOR|PATCH) ")
  set(hv)
  foreach(part MAJOR MINOR PATCH)
    if(NOT lines MATCHES "VMSTACK_VERSION_${part} ([0-9]+)")
      fail("${header}: no VMSTACK_VERSION_${part}")
    endif()
    list(APPEND hv ${CMAKE_MATCH_1})
  endforeach()
  string(REPLACE ";" "." hv "${hv}")
  execute_process(COMMAND ${PKG_CONFIG} --modversion vmstack OUTPUT_VARIABLE pv
    OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_VARIABLE out)
  if(NOT hv STREQUAL VERSION OR NOT pv STREQUAL VERSION)
    fail("versions differ: the project ${VERSION}, vmstack.h ${hv}, vmstack.pc ${pv}")
  endif()

  # ---- soname and symbols -----------------------------------------------------------------
  execute_process(COMMAND ${READELF} -d "${so}" OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT out MATCHES "Library soname: \\[libvmstack\\.so\\.${SOVERSION}\\]")
    fail("${so}: no soname libvmstack.so.${SOVERSION}")
  endif()
  execute_process(COMMAND ${NM} -D --defined-only "${so}" RESULT_VARIABLE rc
    OUTPUT_VARIABLE out ERROR_VARIABLE out)
  string(REGEX MATCHALL "[^\n]+" lines "${out}")
  set(exported 0)
  foreach(l ${lines})
    if(l MATCHES "^[0-9a-f]+ [A-Za-z] vms_[A-Za-z0-9_]+$")
      math(EXPR exported "${exported} + 1")
    else()
      fail("${so} exports `${l}`: not a vms_ name")
    endif()
  endforeach()
  if(exported EQUAL 0 OR NOT rc EQUAL 0)
    fail("${NM} -D --defined-only ${so} failed (${rc}) or listed no vms_ name")
  endif()
  execute_process(COMMAND ${NM} -g --defined-only "${ar}" RESULT_VARIABLE rc
    OUTPUT_VARIABLE out ERROR_VARIABLE out)
  string(REGEX MATCHALL "[^\n]+" lines "${out}")
  # ASan builds add an ODR indicator for each of the library's global variables, named
  # after it: __odr_asan.<name> (gcc), __odr_asan_gen_<name> (clang).
  foreach(l ${lines})
    if(NOT l MATCHES "^[0-9a-f]+ [A-Za-z] (.+)$")
      continue()
    endif()
    set(name "${CMAKE_MATCH_1}")
    if(NOT name MATCHES "^(__odr_asan\\.|__odr_asan_gen_)?vms_")
      fail("${ar} defines the global `${name}`: not a vms_ name (it could clash)")
    endif()
  endforeach()
  file(REMOVE_RECURSE "${DIR}")
  return()
endif()

# Builds and runs programs on this machine: not when cross-compiling. Sanitizer builds
# give the consumer their flags (an instrumented library needs an instrumented program).
if(CMAKE_CROSSCOMPILING)
  return()
endif()
set(VMS_PACKAGE_CFLAGS)
if(VMSTACK_SANITIZE)
  set(VMS_PACKAGE_CFLAGS -fsanitize=${VMSTACK_SANITIZE})
endif()
string(REPLACE ";" "\\;" VMS_PACKAGE_CFLAGS "${VMS_PACKAGE_CFLAGS}")
add_test(NAME install.package COMMAND ${CMAKE_COMMAND} -DBUILD=${PROJECT_BINARY_DIR}
  -DDIR=${CMAKE_CURRENT_BINARY_DIR}/package-prefix -DSRC=${PROJECT_SOURCE_DIR}/examples/usage.c
  -DCC=${CMAKE_C_COMPILER} -DGEN=${CMAKE_GENERATOR} -DNM=${CMAKE_NM} -DREADELF=${CMAKE_READELF}
  "-DCFLAGS=${VMS_PACKAGE_CFLAGS}" -DVERSION=${PROJECT_VERSION}
  -DSOVERSION=$<TARGET_PROPERTY:vmstack,SOVERSION>
  -P ${CMAKE_CURRENT_SOURCE_DIR}/package.cmake)
# One install at a time (install.prefix, examples.installed and examples.build_variants
# install too; every install rewrites the build directory's install_manifest.txt).
set_tests_properties(install.package PROPERTIES LABELS unit TIMEOUT 300
  RESOURCE_LOCK vmstack_install)
if(VMSTACK_SANITIZE MATCHES "thread")
  set_tests_properties(install.package PROPERTIES
    ENVIRONMENT "TSAN_OPTIONS=handle_segv=0:use_sigaltstack=0")
endif()
