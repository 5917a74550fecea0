# cmake -DCOMPILER=... -DFLAGS=... -DSOURCE=tests/tools/vectorise_probe.cpp -DINCLUDE=autodiff/src -P this
# Fails unless GCC reports every loop of SOURCE vectorised under FLAGS (rewind's own compile options).
execute_process(COMMAND ${COMPILER} ${FLAGS} -std=c++20 -O3 -I${INCLUDE} -fopt-info-vec-optimized -c ${SOURCE}
                        -o /dev/null
                RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE report)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "compiling ${SOURCE} failed:\n${report}")
endif()
file(STRINGS ${SOURCE} lines)
set(line_number 0)
set(missing "")
foreach(line IN LISTS lines)
  math(EXPR line_number "${line_number} + 1")
  if(line MATCHES "^  for \\(")
    if(NOT report MATCHES "vectorise_probe.cpp:${line_number}:[0-9]+: optimized: loop vectorized")
      string(APPEND missing "  line ${line_number}: ${line}\n")
    endif()
  endif()
endforeach()
if(missing)
  message(FATAL_ERROR "these loops of ${SOURCE} are not vectorised with '${FLAGS}':\n${missing}"
                      "(see -fopt-info-vec-missed for the reason)")
endif()
message("fast_math loops: vectorised")
