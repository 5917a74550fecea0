# rewind_add_plugin(<target> <sources>...): a rewind plugin, a MODULE library loaded at run time.
# Installed with rewind's package config, so out-of-tree projects use the same function after
# find_package(rewind). The plugin's source ends with REWIND_PLUGIN(descriptor).
function(rewind_add_plugin target)
  add_library(${target} MODULE ${ARGN})
  target_link_libraries(${target} PRIVATE rewind::plugin_api)
  target_compile_features(${target} PRIVATE cxx_std_20)
  set_target_properties(${target} PROPERTIES CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
endfunction()
