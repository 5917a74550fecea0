#include "plugin_options.hpp"

#include <iostream>
#include <stdexcept>

namespace po = boost::program_options;

namespace rwd::cli {

void PluginOptions::add_to(po::options_description& description, bool model_options) {
  description.add_options()("plugin", po::value(&files)->composing(), "load this plugin file (repeatable)")(
      "plugin-dir", po::value(&directories)->composing(),
      "search this directory for plugins, before REWIND_PLUGIN_PATH and the built-in ones (repeatable)");
  if (model_options)
    description.add_options()("option", po::value(&settings)->composing(),
                              "KEY=VALUE for the model plugin, e.g. forget_bias=1 (repeatable)");
}

plugins::Registry PluginOptions::load(bool quiet_problems) const {
  plugins::Registry registry;
  for (const std::string& f : files) registry.load_file(f);
  std::vector<std::filesystem::path> dirs(directories.begin(), directories.end());
  registry.load_search_path(dirs);
  if (!quiet_problems)
    for (const std::string& p : registry.problems()) std::cerr << "warning: " << p << '\n';
  return registry;
}

std::map<std::string, std::string> PluginOptions::option_map(const std::string& flag) const {
  std::map<std::string, std::string> out;
  for (const std::string& s : settings) {
    const auto eq = s.find('=');
    if (eq == std::string::npos || eq == 0)
      throw std::invalid_argument(flag + " '" + s + "' is not KEY=VALUE");
    out[s.substr(0, eq)] = s.substr(eq + 1);
  }
  return out;
}

std::string plugin_names(plugins::Kind kind) {
  plugins::Registry registry;
  registry.load_search_path({});
  std::string names;
  for (const plugins::LoadedPlugin* p : registry.plugins())
    if (p->descriptor->kind == kind) names += (names.empty() ? "" : ", ") + std::string(p->descriptor->name);
  return names.empty() ? "none found" : names;
}

}  // namespace rwd::cli
