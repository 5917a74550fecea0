// Finds, loads and indexes plugins. Libraries stay loaded for the life of the process, so objects a plugin
// made can never outlive its code.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "rewind/models/model.hpp"
#include "rewind/plugins/export.hpp"
#include "rewind/plugins/plugin.hpp"

namespace rwd::plugins {

// Every load failure: the message names the file and what is wrong with it.
class REWIND_PLUGINS_EXPORT PluginError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct LoadedPlugin {
  const Descriptor* descriptor;
  std::filesystem::path file;
};

class REWIND_PLUGINS_EXPORT Registry {
 public:
  // Loads one plugin file; throws PluginError for a missing file, a file that is not a shared library, one
  // without a descriptor, a wrong ABI version or build fingerprint, or a kind and name already taken.
  void load_file(const std::filesystem::path& file);
  // Loads every *.so in dir. Failures do not stop the scan; they are collected in problems().
  void load_directory(const std::filesystem::path& dir);
  // The search path: each of plugin_dirs, then the directories in REWIND_PLUGIN_PATH (':'-separated), then
  // the built-in plugin directory next to the running executable.
  void load_search_path(const std::vector<std::filesystem::path>& plugin_dirs);

  // Throws PluginError listing the plugins of that kind that were found.
  const LoadedPlugin& find(Kind kind, const std::string& name) const;
  std::vector<const LoadedPlugin*> plugins() const;
  const std::vector<std::string>& problems() const { return problems_; }

  // A model whose cells come from the named model plugin; options are checked against its declaration.
  std::unique_ptr<models::Model> make_model(const std::string& cell, const models::ModelConfig& config,
                                            const std::map<std::string, std::string>& options = {}) const;

  // A trainer from the named trainer plugin; options are checked against its declaration.
  std::unique_ptr<trainers::Trainer> make_trainer(
      const std::string& name, const std::map<std::string, std::string>& options = {}) const;

  // Where `cmake --install` puts the built-in plugins, relative to the executable (and so in the build tree).
  static std::filesystem::path builtin_directory();

 private:
  std::map<std::pair<Kind, std::string>, LoadedPlugin> plugins_;
  std::vector<std::string> problems_;
};

}  // namespace rwd::plugins
