# cmake --install: headers, the shared libraries, the built-in plugins (installed by models/builtin), the CLI
# and a package config, so an out-of-tree project builds a plugin with find_package(rewind) and
# rewind_add_plugin().
include(CMakePackageConfigHelpers)

set_target_properties(rewind_autodiff PROPERTIES EXPORT_NAME autodiff INSTALL_RPATH "$ORIGIN")
set_target_properties(rewind_models PROPERTIES EXPORT_NAME models INSTALL_RPATH "$ORIGIN")
set_target_properties(rewind_trainers PROPERTIES EXPORT_NAME trainers INSTALL_RPATH "$ORIGIN")
set_target_properties(rewind_plugins PROPERTIES EXPORT_NAME plugins INSTALL_RPATH "$ORIGIN")
set_target_properties(rewind_runtime PROPERTIES EXPORT_NAME runtime INSTALL_RPATH "$ORIGIN")
set_target_properties(rewind_plugin_api PROPERTIES EXPORT_NAME plugin_api)

install(TARGETS rewind_autodiff rewind_models rewind_trainers rewind_plugins rewind_runtime rewind_plugin_api
  EXPORT rewindTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS rewind RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
foreach(dir autodiff/include models/include trainers/include plugins/include runtime/include
            ${PROJECT_BINARY_DIR}/autodiff/include ${PROJECT_BINARY_DIR}/models/include
            ${PROJECT_BINARY_DIR}/trainers/include ${PROJECT_BINARY_DIR}/plugins/include
            ${PROJECT_BINARY_DIR}/runtime/include)
  install(DIRECTORY ${dir}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endforeach()

set(config_dir ${CMAKE_INSTALL_LIBDIR}/cmake/rewind)
install(EXPORT rewindTargets NAMESPACE rewind:: DESTINATION ${config_dir})
configure_package_config_file(cmake/rewindConfig.cmake.in ${PROJECT_BINARY_DIR}/rewindConfig.cmake
  INSTALL_DESTINATION ${config_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/rewindConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/rewindConfig.cmake ${PROJECT_BINARY_DIR}/rewindConfigVersion.cmake
              cmake/RewindPlugin.cmake
        DESTINATION ${config_dir})
