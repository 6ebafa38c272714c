# Tests of `vmstack checkstack` (tools/cmd_checkstack.c, tools/checkstack_*.c).
# They need none of the vmstack library: checkstack_cli is the command built from its
# own sources, and the test programs link only those. Test inputs with known frames and
# call graphs (tests/checkstack/*.c) are compiled here by gcc with -fstack-usage
# -fcallgraph-info=su; the tests read the frame sizes gcc wrote, so no number is
# guessed. Under clang (no -fcallgraph-info) the tests that need them skip with a reason.

file(GLOB CS_TOOL_SOURCES ${PROJECT_SOURCE_DIR}/tools/checkstack_*.c)
set(CS_SOURCES ${CS_TOOL_SOURCES} ${PROJECT_SOURCE_DIR}/tools/cmd_checkstack.c)
set(CS_INPUT_DIR ${CMAKE_CURRENT_BINARY_DIR}/checkstack-inputs)

add_executable(checkstack_cli ${CMAKE_CURRENT_LIST_DIR}/checkstack_main.c ${CS_SOURCES})
target_include_directories(checkstack_cli PRIVATE ${PROJECT_SOURCE_DIR}/tools)
# The same with a 4 KiB input limit and a realloc that can be made to fail, for the
# tests of read_file's limits (no 2 GiB file is written).
add_executable(checkstack_cli_limits ${CMAKE_CURRENT_LIST_DIR}/checkstack_main.c ${CS_SOURCES})
target_include_directories(checkstack_cli_limits PRIVATE ${PROJECT_SOURCE_DIR}/tools)
target_compile_definitions(checkstack_cli_limits PRIVATE CS_MAX_INPUT_BYTES=4096
  CS_REALLOC=cs_test_realloc)

# ---- test inputs ----------------------------------------------------------------------
# -O1 -fno-inline keeps every function and call of the sources; no -fomit/-fno-omit
# flag, so the x86-64 relation tested is the one of gcc's -O1 default.
set(CS_INPUTS leaf chain recur dyn ptr)
set(CS_INPUT_FLAGS -O1 -fno-inline -fstack-usage -fcallgraph-info=su)
set(CS_HAVE_GCC 0)
set(CS_HAVE_AARCH64 0)
set(CS_OUTPUTS)
if(CMAKE_C_COMPILER_ID STREQUAL "GNU")
  set(CS_HAVE_GCC 1)
  foreach(n ${CS_INPUTS})
    set(o ${CS_INPUT_DIR}/native/${n})
    add_custom_command(OUTPUT ${o}.o ${o}.su ${o}.ci
      COMMAND ${CMAKE_COMMAND} -E make_directory ${CS_INPUT_DIR}/native
      COMMAND ${CMAKE_C_COMPILER} ${CS_INPUT_FLAGS} -c ${CMAKE_CURRENT_LIST_DIR}/checkstack/${n}.c -o ${o}.o
      DEPENDS ${CMAKE_CURRENT_LIST_DIR}/checkstack/${n}.c
      COMMENT "checkstack test input ${n}.c (gcc ${CS_INPUT_FLAGS})" VERBATIM)
    list(APPEND CS_OUTPUTS ${o}.o)
  endforeach()
  # A shared object, and a stripped copy that has only .dynsym: the ELF mode must map
  # symbol addresses to file offsets through the section headers, not only read objects.
  set(o ${CS_INPUT_DIR}/pic/leaf)
  set(cs_strip_cmd ${CMAKE_COMMAND} -E copy ${o}.so ${o}-stripped.so)
  if(CMAKE_STRIP)
    set(cs_strip_cmd ${CMAKE_STRIP} --strip-all ${o}.so -o ${o}-stripped.so)
  endif()
  add_custom_command(OUTPUT ${o}.o ${o}.su ${o}.so ${o}-stripped.so
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CS_INPUT_DIR}/pic
    COMMAND ${CMAKE_C_COMPILER} ${CS_INPUT_FLAGS} -fPIC -c ${CMAKE_CURRENT_LIST_DIR}/checkstack/leaf.c -o ${o}.o
    COMMAND ${CMAKE_C_COMPILER} -shared ${o}.o -o ${o}.so
    COMMAND ${cs_strip_cmd}
    DEPENDS ${CMAKE_CURRENT_LIST_DIR}/checkstack/leaf.c
    COMMENT "checkstack test input libleaf.so" VERBATIM)
  list(APPEND CS_OUTPUTS ${o}-stripped.so)
  # -O2 objects for the ELF decoder: cold parts split off their functions (cold.c) and
  # arguments pushed for calls behind a branch, before the first call (pushargs.c).
  foreach(n cold pushargs)
    set(o ${CS_INPUT_DIR}/o2/${n})
    add_custom_command(OUTPUT ${o}.o ${o}.su
      COMMAND ${CMAKE_COMMAND} -E make_directory ${CS_INPUT_DIR}/o2
      COMMAND ${CMAKE_C_COMPILER} -O2 -fstack-usage -c ${CMAKE_CURRENT_LIST_DIR}/checkstack/${n}.c -o ${o}.o
      DEPENDS ${CMAKE_CURRENT_LIST_DIR}/checkstack/${n}.c
      COMMENT "checkstack test input ${n}.c (gcc -O2 -fstack-usage)" VERBATIM)
    list(APPEND CS_OUTPUTS ${o}.o)
  endforeach()
  # A linked program: the C runtime's functions without a symbol size come first.
  set(o ${CS_INPUT_DIR}/exe/prog)
  add_custom_command(OUTPUT ${o} ${o}.su
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CS_INPUT_DIR}/exe
    COMMAND ${CMAKE_C_COMPILER} ${CS_INPUT_FLAGS} -c ${CMAKE_CURRENT_LIST_DIR}/checkstack/prog.c -o ${o}.o
    COMMAND ${CMAKE_C_COMPILER} ${o}.o -o ${o}
    DEPENDS ${CMAKE_CURRENT_LIST_DIR}/checkstack/prog.c
    COMMENT "checkstack test input prog.c, linked" VERBATIM)
  list(APPEND CS_OUTPUTS ${o})
  # An object with data and no function: nothing to report, which is an error.
  set(o ${CS_INPUT_DIR}/data/nofunc)
  add_custom_command(OUTPUT ${o}.o
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CS_INPUT_DIR}/data
    COMMAND ${CMAKE_C_COMPILER} -O1 -c ${CMAKE_CURRENT_LIST_DIR}/checkstack/nofunc.c -o ${o}.o
    DEPENDS ${CMAKE_CURRENT_LIST_DIR}/checkstack/nofunc.c
    COMMENT "checkstack test input nofunc.c" VERBATIM)
  list(APPEND CS_OUTPUTS ${o}.o)
  # An aarch64 object for the ELF decoder of the other architecture, when the cross
  # compiler is installed (Debian: gcc-aarch64-linux-gnu).
  find_program(CS_AARCH64_GCC aarch64-linux-gnu-gcc)
  if(CS_AARCH64_GCC)
    set(CS_HAVE_AARCH64 1)
    foreach(n leaf chain)
      set(o ${CS_INPUT_DIR}/aarch64/${n})
      add_custom_command(OUTPUT ${o}.o ${o}.su ${o}.ci
        COMMAND ${CMAKE_COMMAND} -E make_directory ${CS_INPUT_DIR}/aarch64
        COMMAND ${CS_AARCH64_GCC} ${CS_INPUT_FLAGS} -c ${CMAKE_CURRENT_LIST_DIR}/checkstack/${n}.c -o ${o}.o
        DEPENDS ${CMAKE_CURRENT_LIST_DIR}/checkstack/${n}.c
        COMMENT "checkstack aarch64 test input ${n}.c" VERBATIM)
      list(APPEND CS_OUTPUTS ${o}.o)
    endforeach()
  endif()
endif()
add_custom_target(checkstack_inputs ALL DEPENDS ${CS_OUTPUTS})

# ---- test programs (one ctest per TEST(name), like vms_test, without the library) -----
set(CS_VMSTACK_BIN "")
if(TARGET vmstack_cmd)
  set(CS_VMSTACK_BIN $<TARGET_FILE:vmstack_cmd>)
endif()
foreach(stem checkstack checkstack_unit)
  if(stem STREQUAL "checkstack")
    add_executable(test_${stem} ${CMAKE_CURRENT_LIST_DIR}/${stem}.c)
    # The checkstack command through qemu-user in the aarch64 cross build too (label
    # cross): it reads the target's objects there, compiled by the cross gcc.
    set(labels cli cross)
    add_dependencies(test_${stem} checkstack_cli checkstack_cli_limits checkstack_inputs)
  else()
    add_executable(test_${stem} ${CMAKE_CURRENT_LIST_DIR}/${stem}.c ${CS_SOURCES})
    set(labels unit cross)   # also in the aarch64 cross build, under qemu-user
  endif()
  target_include_directories(test_${stem} PRIVATE ${CMAKE_CURRENT_LIST_DIR} ${PROJECT_SOURCE_DIR}/tools)
  target_compile_definitions(test_${stem} PRIVATE
    CS_CLI="$<TARGET_FILE:checkstack_cli>"
    CS_CLI_LIMITS="$<TARGET_FILE:checkstack_cli_limits>"
    CS_VMSTACK="${CS_VMSTACK_BIN}"
    CS_INPUTS="${CS_INPUT_DIR}"
    CS_SRC="${CMAKE_CURRENT_LIST_DIR}/checkstack"
    CS_HAVE_GCC=${CS_HAVE_GCC}
    CS_HAVE_AARCH64=${CS_HAVE_AARCH64}
    CS_ARCH="${VMSTACK_ARCH}")
  if(CMAKE_CROSSCOMPILING_EMULATOR)
    set(emu "")
    foreach(word ${CMAKE_CROSSCOMPILING_EMULATOR})
      string(APPEND emu "\"${word}\",")
    endforeach()
    target_compile_definitions(test_${stem} PRIVATE "CS_EMULATOR=${emu}")
  endif()
  file(STRINGS ${CMAKE_CURRENT_LIST_DIR}/${stem}.c lines REGEX "^TEST\\([A-Za-z0-9_]+\\)")
  foreach(line ${lines})
    string(REGEX REPLACE "^TEST\\(([A-Za-z0-9_]+)\\).*" "\\1" name "${line}")
    add_test(NAME ${stem}.${name} COMMAND test_${stem} ${name})
    set_tests_properties(${stem}.${name} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120
      LABELS "${labels}")
  endforeach()
endforeach()
