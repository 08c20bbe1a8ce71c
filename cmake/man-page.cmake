# cmake -DSTOWAGE=path/to/stowage -DOUT=stowage.1 -P man-page.cmake: writes the manual page.
execute_process(COMMAND "${STOWAGE}" help --man OUTPUT_FILE "${OUT}.tmp" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(REMOVE "${OUT}.tmp")
  message(FATAL_ERROR "${STOWAGE} help --man failed: ${rc}")
endif()
file(RENAME "${OUT}.tmp" "${OUT}")
