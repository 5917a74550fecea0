// The registry of built-in plugins from this build tree, loaded once per test binary.
#pragma once

#include "rewind/plugins/registry.hpp"

namespace rwd::test {

inline const plugins::Registry& builtin_plugins() {
  static const plugins::Registry registry = [] {
    plugins::Registry r;
    r.load_directory(REWIND_TEST_PLUGIN_DIR);
    return r;
  }();
  return registry;
}

inline std::unique_ptr<models::Model> make_model(const std::string& cell, models::ModelConfig config,
                                                 bool fused,
                                                 std::map<std::string, std::string> options = {}) {
  options["fused"] = fused ? "true" : "false";
  return builtin_plugins().make_model(cell, config, options);
}

}  // namespace rwd::test
