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

  void add_to(boost::program_options::options_description& description);
  // Loads --plugin files (errors are fatal), then the search path (problems are printed as warnings).
  plugins::Registry load(bool quiet_problems = false) const;
  std::map<std::string, std::string> option_map() const;  // throws for a setting without '='
};

}  // namespace rwd::cli
