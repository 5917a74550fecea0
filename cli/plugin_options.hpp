// The command-line options every plugin-using command shares, and the registry they describe.
#pragma once

#include <boost/program_options.hpp>
#include <map>
#include <string>
#include <vector>

#include "rewind/plugins/registry.hpp"

namespace rwd::cli {

struct PluginOptions {
  std::vector<std::string> files;        // --plugin
  std::vector<std::string> directories;  // --plugin-dir
  std::vector<std::string> settings;     // --option key=value, passed to the model plugin

  // --plugin and --plugin-dir, and --option unless the command takes the model options from a saved run.
  void add_to(boost::program_options::options_description& description, bool model_options = true);
  // Loads --plugin files (errors are fatal), then the search path (problems are printed as warnings).
  plugins::Registry load(bool quiet_problems = false) const;
  // Settings as a map; a setting without '=' is an error naming `flag`, the option it was given with.
  std::map<std::string, std::string> option_map(const std::string& flag = "--option") const;
};

// The names of the plugins of a kind on the default search path, for --help ("adaptive, artbp, ..."), so that
// help lists what is installed rather than what was there when it was written.
std::string plugin_names(plugins::Kind kind);

}  // namespace rwd::cli
