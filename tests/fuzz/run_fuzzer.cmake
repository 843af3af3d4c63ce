# Runs one libFuzzer target for SECONDS on a fresh copy of its seed corpus
# in WORK (new inputs go there, never into the source tree). A crash, leak,
# timeout or failed invariant fails the test; libFuzzer prints the report
# and saves the input as WORK/crash-<sha1> (or leak-, timeout-, oom-).
# Inputs stay within 4 KiB (longer seeds are cut): big inputs are mostly
# slow inputs, and every target reaches its limits within that size.
#   cmake -DFUZZER=... -DCORPUS=... -DWORK=... -DSECONDS=30 -P run_fuzzer.cmake
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK}/corpus)
file(COPY ${CORPUS}/ DESTINATION ${WORK}/corpus)
execute_process(
  COMMAND ${FUZZER} -max_total_time=${SECONDS} -timeout=10 -max_len=4096
          -print_final_stats=1 -artifact_prefix=${WORK}/ ${WORK}/corpus
  RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "fuzzer ${FUZZER} failed (${result}); the input is in ${WORK}/")
endif()
