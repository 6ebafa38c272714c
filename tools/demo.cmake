# `vmstack demo` and `vmstack selftest`: extra sources of the vmstack command.
#
# selftest_clash.c holds the selftest's large-frame function; it alone is compiled with
# -fstack-clash-protection, so that the selftest checks that such probes hit the guard
# (the other files keep the flags of the rest of the build).
target_sources(vmstack_cmd PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/selftest_clash.c)
set_source_files_properties(${CMAKE_CURRENT_SOURCE_DIR}/selftest_clash.c PROPERTIES
  COMPILE_OPTIONS "-fstack-clash-protection")
