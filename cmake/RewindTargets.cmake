# The project's own targets, each made the same way.
include(GenerateExportHeader)

# rewind_add_library(<name> SOURCES ... [PUBLIC deps...] [PRIVATE deps...]): librewind_<name>.so as
# rewind::<name>, hidden visibility with a generated rewind/<name>/export.hpp, headers in <folder>/include.
function(rewind_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC;PRIVATE" ${ARGN})
  set(target rewind_${name})
  add_library(${target} SHARED ${ARG_SOURCES})
  add_library(rewind::${name} ALIAS ${target})
  string(TOUPPER ${name} upper)
  generate_export_header(${target} BASE_NAME REWIND_${upper}
                         EXPORT_FILE_NAME ${CMAKE_CURRENT_BINARY_DIR}/include/rewind/${name}/export.hpp)
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<BUILD_INTERFACE:${CMAKE_CURRENT_BINARY_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_compile_features(${target} PUBLIC cxx_std_20)
  target_link_libraries(${target} PUBLIC ${ARG_PUBLIC} PRIVATE ${ARG_PRIVATE} $<BUILD_INTERFACE:rewind_build_flags>)
  set_target_properties(${target} PROPERTIES VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR})
endfunction()

# rewind_builtin_plugin(<target> <sources>...): a plugin shipped with rewind, built into the plugin
# directory the executable searches and installed there.
function(rewind_builtin_plugin target)
  rewind_add_plugin(${target} ${ARGN})
  target_link_libraries(${target} PRIVATE rewind_build_flags)
  set_target_properties(${target} PROPERTIES
    LIBRARY_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/${REWIND_PLUGIN_INSTALL_DIR}
    INSTALL_RPATH "$ORIGIN/../..")
  install(TARGETS ${target} LIBRARY DESTINATION ${REWIND_PLUGIN_INSTALL_DIR})
endfunction()
