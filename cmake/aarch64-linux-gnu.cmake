# CMake toolchain file: cross-compile vmstack for aarch64 Linux with Debian's
# gcc-aarch64-linux-gnu, and run the test programs under qemu-user with the target's
# C library from /usr/aarch64-linux-gnu (Debian: apt-get install gcc-aarch64-linux-gnu
# qemu-user). Used by scripts/cross-aarch64.sh; ctest runs each test through the
# emulator below.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_ASM_COMPILER aarch64-linux-gnu-gcc)
# The C++ tests (tests/cxx.cmake) need g++-aarch64-linux-gnu; without it they are left
# out, as in a native build without a C++ compiler.
find_program(VMS_AARCH64_CXX aarch64-linux-gnu-g++)
if(VMS_AARCH64_CXX)
  set(CMAKE_CXX_COMPILER ${VMS_AARCH64_CXX})
endif()

set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# -L: where qemu finds the aarch64 dynamic loader and libraries.
set(CMAKE_CROSSCOMPILING_EMULATOR "qemu-aarch64;-L;/usr/aarch64-linux-gnu")
