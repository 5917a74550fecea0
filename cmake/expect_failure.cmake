# cmake -DCOMMAND="prog;arg;..." -DEXPECT="regex" -P expect_failure.cmake
# Passes when the command exits non-zero AND its output (stdout + stderr) matches EXPECT. A crash (a signal,
# reported as text instead of an exit status) is not a refusal and fails.
execute_process(COMMAND ${COMMAND} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT code MATCHES "^[0-9]+$" OR code EQUAL 0)
  message(FATAL_ERROR "expected a non-zero exit status, got '${code}'\n${out}${err}")
endif()
if(NOT "${out}${err}" MATCHES "${EXPECT}")
  message(FATAL_ERROR "exit ${code}, but the output does not match '${EXPECT}':\n${out}${err}")
endif()
