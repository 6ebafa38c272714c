# The installed header on its own: strict ISO C from C89 to C17 (no _GNU_SOURCE, which
# the project sets for its own files), POSIX mode (vms_handle_fault declared) and C++
# from C++98 to C++20 (also with -Wold-style-cast, which C++ code bases often make an
# error: the header's macros expand in their code), warnings as errors. The compiler is
# run directly with -fsyntax-only: a check of the header, not a program. The build's own
# compilers, and in a native build gcc and clang too where they are installed (users
# build with either), as header.<compiler>.<std>.
include(CheckLanguage)
check_language(CXX)
set(VMS_HEADER_FLAGS -Wall -Wextra -Werror -pedantic-errors -fsyntax-only
    -I${PROJECT_SOURCE_DIR}/include)
set(VMS_HEADER_SRC ${CMAKE_CURRENT_SOURCE_DIR}/header_iso.c)

set(vms_header_cc ${CMAKE_C_COMPILER})
set(vms_header_cxx ${CMAKE_CXX_COMPILER})
if(NOT CMAKE_CROSSCOMPILING)
  foreach(pair "gcc;g++" "clang;clang++")
    list(GET pair 0 c)
    list(GET pair 1 cxx)
    find_program(VMS_HEADER_${c} ${c})
    find_program(VMS_HEADER_${cxx} ${cxx})
    if(VMS_HEADER_${c})
      list(APPEND vms_header_cc ${VMS_HEADER_${c}})
    endif()
    if(VMS_HEADER_${cxx})
      list(APPEND vms_header_cxx ${VMS_HEADER_${cxx}})
    endif()
  endforeach()
endif()

# header.<name>.<std>: the build's own compiler is "cc" / "cxx", the others by name.
set(vms_seen)
foreach(cc ${vms_header_cc})
  get_filename_component(real ${cc} REALPATH)
  if(real IN_LIST vms_seen)
    continue()
  endif()
  list(APPEND vms_seen ${real})
  if(cc STREQUAL CMAKE_C_COMPILER)
    set(name cc)
  else()
    get_filename_component(name ${cc} NAME)
  endif()
  foreach(std c89 c99 c11 c17)
    add_test(NAME header.${name}.${std} COMMAND ${cc} -std=${std} ${VMS_HEADER_FLAGS}
             ${VMS_HEADER_SRC})
    add_test(NAME header.${name}.${std}_posix COMMAND ${cc} -std=${std} ${VMS_HEADER_FLAGS}
             -D_POSIX_C_SOURCE=200809L -DVMS_WANT_HANDLE_FAULT ${VMS_HEADER_SRC})
    set_tests_properties(header.${name}.${std} header.${name}.${std}_posix
      PROPERTIES LABELS "unit;cross")
  endforeach()
endforeach()
if(CMAKE_CXX_COMPILER)
  set(vms_seen)
  foreach(cxx ${vms_header_cxx})
    get_filename_component(real ${cxx} REALPATH)
    if(real IN_LIST vms_seen)
      continue()
    endif()
    list(APPEND vms_seen ${real})
    if(cxx STREQUAL CMAKE_CXX_COMPILER)
      set(name cxx)
    else()
      get_filename_component(name ${cxx} NAME)
      string(REPLACE "+" "x" name ${name})
    endif()
    foreach(std c++98 c++11 c++17 c++20)
      string(REPLACE "+" "x" tstd ${std})
      add_test(NAME header.${name}.${tstd} COMMAND ${cxx} -x c++ -std=${std}
               ${VMS_HEADER_FLAGS} -Wold-style-cast -DVMS_WANT_HANDLE_FAULT ${VMS_HEADER_SRC})
      set_tests_properties(header.${name}.${tstd} PROPERTIES LABELS "unit;cross")
    endforeach()
  endforeach()
endif()
