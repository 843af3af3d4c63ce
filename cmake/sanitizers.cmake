# Sanitizer build: -DHUBFLOW_SANITIZE=address,undefined (any list that
# -fsanitize= accepts, with g++ or clang) instruments everything built after
# this file is included: the broker, hubflowctl, plugins, tests and benches.
# Tests run the instrumented binaries, so `ctest` then runs the whole suite
# under the sanitizers (see docs/fuzzing.md).
set(HUBFLOW_SANITIZE "" CACHE STRING
    "Sanitizers for every target, as for -fsanitize= (e.g. address,undefined); empty: none")

# Fuzz build: -DHUBFLOW_FUZZ=ON with clang (CC=clang CXX=clang++). Every
# target gets libFuzzer's coverage instrumentation (so the libraries the fuzz
# targets link are what libFuzzer steers by) and, unless HUBFLOW_SANITIZE says
# otherwise, ASan and UBSan; UBSan aborts, so libFuzzer keeps the input.
# tests/fuzz/ links the fuzz targets with libFuzzer itself.
option(HUBFLOW_FUZZ "Build the fuzz targets with libFuzzer (clang only)" OFF)
if(HUBFLOW_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "hubflow: HUBFLOW_FUZZ needs clang: configure with CC=clang CXX=clang++ (apt-get install clang)")
  endif()
  if(NOT HUBFLOW_SANITIZE)
    set(HUBFLOW_SANITIZE address,undefined CACHE STRING "" FORCE)
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link -fno-sanitize-recover=all)
endif()

if(HUBFLOW_SANITIZE)
  # Frame pointers keep the reports' stacks complete in RelWithDebInfo.
  add_compile_options(-fsanitize=${HUBFLOW_SANITIZE} -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${HUBFLOW_SANITIZE})
  # Tests whose RSS checks mean nothing under ASan's quarantine skip them.
  add_compile_definitions(HUBFLOW_SANITIZED)
  message(STATUS "hubflow: sanitizers ${HUBFLOW_SANITIZE}")
endif()

# Sanitizer runtime options for the tests of one directory. The tests start
# the hubflow binary as a child process, which inherits them. UBSan stops at
# its first report, so no test passes over undefined behaviour; ubsan.supp
# lists the reports from third-party headers that are known and harmless.
set(HUBFLOW_SANITIZER_ENV
  "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:suppressions=${CMAKE_CURRENT_LIST_DIR}/ubsan.supp")

# Gives every test added so far in the calling directory the sanitizer
# runtime options (CMake 3.25 sets test properties per directory only).
function(hubflow_sanitizer_test_env)
  if(NOT HUBFLOW_SANITIZE)
    return()
  endif()
  get_property(tests DIRECTORY PROPERTY TESTS)
  foreach(test ${tests})
    set_property(TEST ${test} APPEND PROPERTY ENVIRONMENT ${HUBFLOW_SANITIZER_ENV})
  endforeach()
endfunction()
