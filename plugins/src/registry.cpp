#include "rewind/plugins/registry.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace rwd::plugins {
namespace fs = std::filesystem;

namespace {

// Never destroyed: unloading a library while a Cell it made is alive would leave a dangling vtable.
std::vector<boost::dll::shared_library>& loaded_libraries() {
  static auto* libraries = new std::vector<boost::dll::shared_library>();
  return *libraries;
}

// A plugin's cell, whose failures name the plugin, its file and the layer: a message from deep inside a
// user's cell ("slice_cols: columns 0..512 of [32, 256]") says nothing about where it came from. Allocation
// failures pass unchanged: they name what and how much themselves.
class NamedCell final : public models::Cell {
  using Tape = autodiff::Tape;
  using Var = autodiff::Var;
  using Parameter = autodiff::Parameter;

 public:
  NamedCell(std::unique_ptr<models::Cell> cell, std::string origin)
      : cell_(std::move(cell)), origin_(std::move(origin)) {}
  std::int64_t input_size() const override { return cell_->input_size(); }
  std::int64_t hidden_size() const override { return cell_->hidden_size(); }
  int state_size() const override { return cell_->state_size(); }
  models::State step(Tape& tape, const Var& x, const models::State& state) override {
    try {
      return cell_->step(tape, x, state);
    } catch (const autodiff::AllocationError&) {
      throw;
    } catch (const std::exception& e) {
      throw PluginError(origin_ + ": step failed: " + e.what());
    }
  }
  Var output(const models::State& state) const override { return cell_->output(state); }
  const autodiff::Tensor* infer(const autodiff::Tensor& x, std::span<autodiff::Tensor> state) override {
    try {
      return cell_->infer(x, state);
    } catch (const autodiff::AllocationError&) {
      throw;
    } catch (const std::exception& e) {
      throw PluginError(origin_ + ": infer failed: " + e.what());
    }
  }
  models::Sequence run(Tape& tape, const Var& inputs, const models::State& state,
                       std::span<const std::uint8_t> resets) override {
    try {
      return cell_->run(tape, inputs, state, resets);
    } catch (const autodiff::AllocationError&) {
      throw;
    } catch (const PluginError&) {
      throw;  // from the default run's calls of step(), already named
    } catch (const std::exception& e) {
      throw PluginError(origin_ + ": run failed: " + e.what());
    }
  }
  std::vector<Parameter*> parameters() override { return cell_->parameters(); }

 private:
  std::unique_ptr<models::Cell> cell_;
  std::string origin_;
};

// Whether the file starts like a shared library; throws when it cannot be read at all.
bool looks_like_elf(const fs::path& file, const std::string& where) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw PluginError(where + ": cannot be read: " + std::strerror(errno));
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::memcmp(magic,
                                         "\x7f"
                                         "ELF",
                                         4) == 0;
}

// The dynamic loader's own reason (Boost.DLL's error code says only "Bad file descriptor" and the like).
std::string dlopen_reason(const fs::path& file) {
  ::dlerror();
  if (void* handle = ::dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL)) {
    ::dlclose(handle);
    return {};
  }
  const char* reason = ::dlerror();
  return reason != nullptr ? reason : "";
}

}  // namespace

void Registry::load_file(const fs::path& file) {
  const std::string where = "plugin '" + file.string() + "'";
  std::error_code ec;
  if (!fs::exists(file, ec)) throw PluginError(where + ": no such file");
  if (!fs::is_regular_file(file, ec)) throw PluginError(where + ": not a regular file");
  const fs::path canonical = fs::canonical(file, ec);
  for (const auto& [key, plugin] : plugins_)
    if (plugin.file == canonical) return;  // the same file reached twice through the search path
  if (!looks_like_elf(file, where)) throw PluginError(where + ": not a shared library (no ELF header)");

  boost::dll::shared_library library;
  boost::dll::fs::error_code load_error;
  library.load(canonical, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, load_error);
  if (load_error) {
    const std::string reason = dlopen_reason(canonical);
    throw PluginError(where + ": cannot be loaded: " + (reason.empty() ? load_error.message() : reason));
  }
  if (!library.has(descriptor_symbol))
    throw PluginError(where + ": not a rewind plugin (it exports no '" + std::string(descriptor_symbol) +
                      "'; end the plugin's source with REWIND_PLUGIN(descriptor))");
  const Descriptor& d = library.get_alias<const Descriptor>(descriptor_symbol);
  if (d.abi_version != abi_version)
    throw PluginError(where + ": built for plugin ABI version " + std::to_string(d.abi_version) +
                      ", expected " + std::to_string(abi_version) + "; rebuild it against this rewind");
  if (d.fingerprint == nullptr || std::strcmp(d.fingerprint, build_fingerprint) != 0)
    throw PluginError(where + ": built with '" + (d.fingerprint ? d.fingerprint : "(none)") +
                      "', expected '" + build_fingerprint +
                      "'; rebuild it with the same compiler and standard library");
  if (d.name == nullptr || *d.name == '\0') throw PluginError(where + ": descriptor has no name");
  if ((d.kind == Kind::model && d.create_cell == nullptr) ||
      (d.kind == Kind::trainer && d.create_trainer == nullptr) ||
      (d.kind != Kind::model && d.kind != Kind::trainer))
    throw PluginError(where + ": descriptor '" + d.name + "' has no factory for its kind");
  const auto key = std::make_pair(d.kind, std::string(d.name));
  if (const auto it = plugins_.find(key); it != plugins_.end())
    throw PluginError(where + ": " + name_of(d.kind) + " plugin '" + d.name + "' is already provided by '" +
                      it->second.file.string() + "'");
  loaded_libraries().push_back(std::move(library));  // first: the descriptor lives in the library
  plugins_.emplace(key, LoadedPlugin{&d, canonical});
}

void Registry::load_directory(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    problems_.push_back("plugin directory '" + dir.string() + "': not a directory");
    return;
  }
  std::vector<fs::path> files;
  fs::directory_iterator entries(dir, ec);
  if (ec) {
    problems_.push_back("plugin directory '" + dir.string() + "': cannot be read: " + ec.message());
    return;
  }
  for (const fs::directory_entry& e : entries)
    if (e.path().extension() == ".so") files.push_back(e.path());
  std::sort(files.begin(), files.end());  // a deterministic order decides which duplicate is reported
  for (const fs::path& f : files) {
    try {
      load_file(f);
    } catch (const PluginError& e) {
      problems_.push_back(e.what());
    }
  }
}

void Registry::load_search_path(const std::vector<fs::path>& plugin_dirs) {
  for (const fs::path& d : plugin_dirs) load_directory(d);
  if (const char* env = std::getenv("REWIND_PLUGIN_PATH")) {
    std::string list = env;
    std::size_t start = 0;
    while (start <= list.size()) {
      const std::size_t end = std::min(list.find(':', start), list.size());
      if (end > start) load_directory(list.substr(start, end - start));
      start = end + 1;
    }
  }
  const fs::path builtin = builtin_directory();
  std::error_code ec;
  if (fs::is_directory(builtin, ec)) load_directory(builtin);
}

const LoadedPlugin& Registry::find(Kind kind, const std::string& name) const {
  if (const auto it = plugins_.find({kind, name}); it != plugins_.end()) return it->second;
  std::string found;
  for (const auto& [key, plugin] : plugins_)
    if (key.first == kind) found += (found.empty() ? "" : ", ") + key.second;
  throw PluginError(std::string("no ") + name_of(kind) + " plugin named '" + name +
                    "' (found: " + (found.empty() ? "none" : found) + ")");
}

std::vector<const LoadedPlugin*> Registry::plugins() const {
  std::vector<const LoadedPlugin*> out;
  for (const auto& [key, plugin] : plugins_) out.push_back(&plugin);
  return out;
}

std::unique_ptr<models::Model> Registry::make_model(const std::string& cell,
                                                    const models::ModelConfig& config,
                                                    const std::map<std::string, std::string>& options) const {
  const Descriptor& d = *find(Kind::model, cell).descriptor;
  // The Model's own options, common to every cell plugin; the rest are the plugin's.
  constexpr models::OptionSpec model_options[] = {
      {"dropout", models::OptionType::real, "0",
       "dropout on the embedding, between layers and before the head (training only)"},
      {"locked_dropout", models::OptionType::boolean, "false", "one dropout mask per window and row"},
      {"tie_weights", models::OptionType::boolean, "false",
       "the head's weight is the embedding's (needs embedding size = hidden size)"}};
  std::map<std::string, std::string> own, cell_options;
  for (const auto& option : options) {
    const std::string& key = option.first;  // clang 14 cannot capture a structured binding
    const bool model_option = std::any_of(std::begin(model_options), std::end(model_options),
                                          [&](const models::OptionSpec& spec) { return key == spec.name; });
    (model_option ? own : cell_options)[key] = option.second;
  }
  const models::Options resolved_own = models::Options::resolve(model_options, own, "model '" + cell + "'");
  // Given options override the config; the config's own values stand otherwise.
  models::ModelConfig with_own = config;
  if (own.count("dropout")) with_own.dropout = resolved_own.real("dropout");
  if (own.count("locked_dropout")) with_own.locked_dropout = resolved_own.boolean("locked_dropout");
  if (own.count("tie_weights")) with_own.tie_weights = resolved_own.boolean("tie_weights");
  const models::Options resolved =
      models::Options::resolve(d.option_specs(), cell_options, "model '" + cell + "'");
  // A factory's failure names the plugin, its file and the layer; an allocation failure says so itself.
  const std::string origin = "model plugin '" + cell + "' (" + find(Kind::model, cell).file.string() + ")";
  auto make_cell = [&d, &origin](const models::CellSpec& spec) -> std::unique_ptr<models::Cell> {
    std::unique_ptr<models::Cell> cell;
    try {
      cell = d.create_cell(spec);
    } catch (const autodiff::AllocationError&) {
      throw;
    } catch (const std::exception& e) {
      throw PluginError(origin + ": making the cell of layer " + std::to_string(spec.layer) +
                        " failed: " + e.what());
    }
    if (!cell) return nullptr;
    return std::make_unique<NamedCell>(std::move(cell), origin + ", layer " + std::to_string(spec.layer));
  };
  return std::make_unique<models::Model>(with_own, make_cell, resolved);
}

std::unique_ptr<trainers::Trainer> Registry::make_trainer(
    const std::string& name, const std::map<std::string, std::string>& options) const {
  const Descriptor& d = *find(Kind::trainer, name).descriptor;
  trainers::TrainerSpec spec{models::Options::resolve(d.option_specs(), options, "trainer '" + name + "'")};
  auto trainer = d.create_trainer(spec);
  if (!trainer)
    throw PluginError("trainer plugin '" + name + "' (" + find(Kind::trainer, name).file.string() +
                      ") made no trainer");
  return trainer;
}

fs::path Registry::builtin_directory() {
  return boost::dll::program_location().parent_path() / REWIND_PLUGIN_RELATIVE_DIR;
}

}  // namespace rwd::plugins
