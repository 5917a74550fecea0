# cmake -DCOMMAND="prog;arg;..." -DEXPECT="regex" -P expect_success.cmake
# Passes when the command exits 0 AND its output (stdout + stderr) matches EXPECT. ctest's
# PASS_REGULAR_EXPRESSION alone ignores the exit status: a command that prints the text and then crashes passes.
execute_process(COMMAND ${COMMAND} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT code STREQUAL "0")
  message(FATAL_ERROR "expected exit 0, got '${code}'\n${out}${err}")
endif()
if(NOT "${out}${err}" MATCHES "${EXPECT}")
  message(FATAL_ERROR "exit 0, but the output does not match '${EXPECT}':\n${out}${err}")
endif()
message("${out}${err}")
