# Project-wide warning, code generation and sanitizer flags, applied to every rewind target through one interface library.
add_library(rewind_build_flags INTERFACE)
target_compile_options(rewind_build_flags INTERFACE -Wall -Wextra -Wpedantic $<$<BOOL:${REWIND_WERROR}>:-Werror>)
# GCC 12 reports false -Wrestrict positives inside std::string's operator+ at -O2 (GCC bug 105329).
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(rewind_build_flags INTERFACE -Wno-restrict)
endif()
# The kernels' activation loops vectorise only when GCC may if-convert float compares, which trapping math
# forbids; nothing in rewind reads floating-point exception flags. REWIND_ARCH widens the vectors (AVX2/512).
target_compile_options(rewind_build_flags INTERFACE -fno-trapping-math
                                                    $<$<BOOL:${REWIND_ARCH}>:-march=${REWIND_ARCH}>)
if(REWIND_SANITIZE)
  target_compile_options(rewind_build_flags INTERFACE -fsanitize=${REWIND_SANITIZE} -fno-sanitize-recover=all
                                                      -fno-omit-frame-pointer)
  target_link_options(rewind_build_flags INTERFACE -fsanitize=${REWIND_SANITIZE})
endif()
if(REWIND_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "REWIND_FUZZ needs clang (libFuzzer): configure with CC=clang CXX=clang++")
  endif()
  target_compile_options(rewind_build_flags INTERFACE -fsanitize=fuzzer-no-link)
endif()
