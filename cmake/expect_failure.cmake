# cmake -DCOMMAND="prog;arg;..." -DEXPECT="regex" -P expect_failure.cmake
# Passes when the command exits non-zero AND its output (stdout + stderr) matches EXPECT.
execute_process(COMMAND ${COMMAND} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(code EQUAL 0)
  message(FATAL_ERROR "expected a non-zero exit, got 0\n${out}${err}")
endif()
if(NOT "${out}${err}" MATCHES "${EXPECT}")
  message(FATAL_ERROR "exit ${code}, but the output does not match '${EXPECT}':\n${out}${err}")
endif()
