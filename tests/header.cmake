# The installed header on its own: strict ISO C (no _GNU_SOURCE, which the project sets
# for its own files), POSIX mode (vms_handle_fault declared) and C++, warnings as errors.
# The compiler is run directly with -fsyntax-only: a check of the header, not a program.
include(CheckLanguage)
check_language(CXX)
set(VMS_HEADER_FLAGS -Wall -Wextra -Werror -pedantic-errors -fsyntax-only
    -I${PROJECT_SOURCE_DIR}/include)
foreach(std c99 c11)
  add_test(NAME header.${std} COMMAND ${CMAKE_C_COMPILER} -std=${std} ${VMS_HEADER_FLAGS}
           ${CMAKE_CURRENT_SOURCE_DIR}/header_iso.c)
  add_test(NAME header.${std}_posix COMMAND ${CMAKE_C_COMPILER} -std=${std} ${VMS_HEADER_FLAGS}
           -D_POSIX_C_SOURCE=200809L -DVMS_WANT_HANDLE_FAULT ${CMAKE_CURRENT_SOURCE_DIR}/header_iso.c)
  set_tests_properties(header.${std} header.${std}_posix PROPERTIES LABELS "unit;cross")
endforeach()
if(CMAKE_CXX_COMPILER)
  add_test(NAME header.cxx11 COMMAND ${CMAKE_CXX_COMPILER} -x c++ -std=c++11 ${VMS_HEADER_FLAGS}
           -DVMS_WANT_HANDLE_FAULT ${CMAKE_CURRENT_SOURCE_DIR}/header_iso.c)
  set_tests_properties(header.cxx11 PROPERTIES LABELS "unit;cross")
endif()
