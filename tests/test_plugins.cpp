// The plugin registry: built-ins are found at run time, and every kind of bad plugin is refused with a
// message that names the file and the problem.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "plugin_fixtures.hpp"

using namespace rwd;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {
fs::path scratch_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("rewind_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}
const fs::path builtin_dir = REWIND_TEST_PLUGIN_DIR;
const fs::path fixture_dir = REWIND_TEST_FIXTURE_DIR;
}  // namespace

TEST_CASE("the built-in cells are plugins found at run time", "[plugins]") {
  const plugins::Registry& r = test::builtin_plugins();
  CHECK(r.problems().empty());
  for (const char* name : {"rnn", "gru", "lstm"}) {
    const plugins::LoadedPlugin& p = r.find(plugins::Kind::model, name);
    CHECK(p.file.filename() == "librewind_model_" + std::string(name) + ".so");
    CHECK(p.descriptor->abi_version == plugins::abi_version);
    CHECK(std::string(p.descriptor->option_specs()[0].name) == "fused");
  }
}

TEST_CASE("unknown names list what was found", "[plugins]") {
  CHECK_THROWS_WITH(test::builtin_plugins().find(plugins::Kind::model, "transformer"),
                    Contains("no model plugin named 'transformer' (found: gru, lstm, rnn)"));
  CHECK_THROWS_WITH(test::builtin_plugins().find(plugins::Kind::trainer, "bptt"),
                    Contains("no trainer plugin named 'bptt' (found: adaptive, artbp, checkpointed, full, "
                             "rtrl, snap1, truncated, uoro)"));
  plugins::Registry empty;
  CHECK_THROWS_WITH(empty.find(plugins::Kind::trainer, "full"),
                    Contains("no trainer plugin named 'full' (found: none)"));
}

TEST_CASE("bad plugin files are refused with the file and the reason", "[plugins]") {
  plugins::Registry r;
  const fs::path dir = scratch_dir("plugins");
  CHECK_THROWS_WITH(r.load_file(dir / "missing.so"), Contains("missing.so': no such file"));

  const fs::path text = dir / "notes.so";
  std::ofstream(text) << "not a library\n";
  CHECK_THROWS_WITH(r.load_file(text), Contains("notes.so': not a shared library (no ELF header)"));

  CHECK_THROWS_WITH(r.load_file(fixture_dir / "librewind_fixture_no_descriptor.so"),
                    Contains("librewind_fixture_no_descriptor.so': not a rewind plugin (it exports no "
                             "'rewind_plugin_descriptor'"));
  CHECK_THROWS_WITH(r.load_file(fixture_dir / "librewind_fixture_wrong_abi.so"),
                    Contains("wrong_abi.so': built for plugin ABI version 99, expected 4"));
  CHECK_THROWS_WITH(r.load_file(fixture_dir / "librewind_fixture_wrong_fingerprint.so"),
                    Contains("built with 'msvc 19, msvc stl, float training', expected '" +
                             std::string(plugins::build_fingerprint) + "'"));

  // A truncated ELF file: the header is right, the rest is missing.
  const fs::path truncated = dir / "truncated.so";
  {
    std::ifstream in(builtin_dir / "librewind_model_rnn.so", std::ios::binary);
    std::string head(64, '\0');
    in.read(head.data(), 64);
    std::ofstream(truncated, std::ios::binary) << head;
  }
  CHECK_THROWS_WITH(r.load_file(truncated), Contains("truncated.so': cannot be loaded"));

  fs::create_directories(dir / "folder.so");
  CHECK_THROWS_WITH(r.load_file(dir / "folder.so"), Contains("folder.so': not a regular file"));
  CHECK_THROWS_WITH(r.load_file(fixture_dir / "librewind_fixture_no_name.so"),
                    Contains("no_name.so': descriptor has no name"));
  CHECK_THROWS_WITH(r.load_file(fixture_dir / "librewind_fixture_no_factory.so"),
                    Contains("no_factory.so': descriptor 'no_factory' has no factory for its kind"));
  CHECK(r.plugins().empty());
  fs::remove_all(dir);
}

TEST_CASE("two plugins with the same kind and name are an error naming both files", "[plugins]") {
  plugins::Registry r;
  r.load_file(builtin_dir / "librewind_model_lstm.so");
  r.load_file(builtin_dir / "librewind_model_lstm.so");  // the same file again is not a duplicate
  const fs::path dir = scratch_dir("duplicate");
  fs::copy_file(builtin_dir / "librewind_model_lstm.so", dir / "my_lstm.so");
  CHECK_THROWS_WITH(r.load_file(dir / "my_lstm.so"),
                    Contains("my_lstm.so': model plugin 'lstm' is already provided by '") &&
                        Contains("librewind_model_lstm.so'"));
  fs::remove_all(dir);
}

TEST_CASE("a trainer plugin whose factory returns nothing is refused when asked for a trainer", "[plugins]") {
  plugins::Registry r;
  r.load_file(fixture_dir / "librewind_fixture_null_trainer.so");
  CHECK(r.plugins().size() == 1);
  CHECK_THROWS_WITH(r.make_trainer("null_trainer"), Contains("trainer plugin 'null_trainer' (") &&
                                                        Contains("null_trainer.so) made no trainer"));
}

TEST_CASE("a cell factory that throws is named with its plugin file and layer", "[plugins]") {
  plugins::Registry r;
  r.load_file(fixture_dir / "librewind_fixture_throwing_cell.so");
  models::ModelConfig config;
  config.input_size = 3;
  config.output_size = 2;
  CHECK_THROWS_WITH(r.make_model("throwing_cell", config, {}),
                    Contains("model plugin 'throwing_cell' (") && Contains("throwing_cell.so)") &&
                        Contains("layer 0") && Contains("the cell refuses to be made"));
  // A step that throws is named the same way, through the model's step and its whole-window run.
  config.layers = 2;
  auto model = r.make_model("throwing_cell", config, {{"throw_in", "step"}});
  autodiff::Tape tape;
  models::ModelState state;
  model->begin(tape, model->initial_state(1), state);
  const autodiff::Var x = tape.input(autodiff::Tensor(autodiff::Shape::matrix(1, 3), autodiff::DType::f32));
  for (const bool whole_window : {false, true})
    CHECK_THROWS_WITH(whole_window ? model->features(tape, x, state) : model->step(tape, x, state),
                      Contains("model plugin 'throwing_cell' (") && Contains("throwing_cell.so), layer 0") &&
                          Contains("the cell refuses to step"));
}

TEST_CASE("a directory scan collects problems and keeps the good plugins", "[plugins]") {
  plugins::Registry r;
  r.load_directory(fixture_dir);
  // One problem per broken fixture, in file name order; the three well-formed plugins are kept.
  const char* broken[] = {"no_descriptor", "no_factory", "no_name", "wrong_abi", "wrong_fingerprint"};
  REQUIRE(r.problems().size() == std::size(broken));
  for (std::size_t i = 0; i < std::size(broken); ++i)
    CHECK_THAT(r.problems()[i], Contains("librewind_fixture_" + std::string(broken[i]) + ".so'"));
  REQUIRE(r.plugins().size() == 3);
  CHECK(r.find(plugins::Kind::model, "mgu").file.filename() == "librewind_fixture_mgu.so");
  CHECK(r.find(plugins::Kind::trainer, "null_trainer").file.filename() ==
        "librewind_fixture_null_trainer.so");
  CHECK(r.find(plugins::Kind::model, "throwing_cell").file.filename() ==
        "librewind_fixture_throwing_cell.so");
  r.load_directory("/nonexistent/plugins");
  CHECK_THAT(r.problems().back(), Contains("'/nonexistent/plugins': not a directory"));
}

TEST_CASE("REWIND_PLUGIN_PATH is searched", "[plugins]") {
  ::setenv("REWIND_PLUGIN_PATH", (std::string("/nonexistent:") + builtin_dir.string()).c_str(), 1);
  plugins::Registry r;
  r.load_search_path({});
  ::unsetenv("REWIND_PLUGIN_PATH");
  CHECK(r.find(plugins::Kind::model, "gru").file == fs::canonical(builtin_dir / "librewind_model_gru.so"));
  CHECK_THAT(r.problems().front(), Contains("'/nonexistent': not a directory"));
}

TEST_CASE("plugin options are checked against the declaration", "[plugins]") {
  models::ModelConfig c;
  c.vocab_size = 4;
  CHECK_THROWS_WITH(test::builtin_plugins().make_model("lstm", c, {{"forget_bais", "1"}}),
                    Contains("model 'lstm': unknown option 'forget_bais' (declared: fused, forget_bias)"));
  CHECK_THROWS_WITH(test::builtin_plugins().make_model("lstm", c, {{"forget_bias", "high"}}),
                    Contains("model 'lstm': option 'forget_bias' expects a real number, got 'high'"));
  CHECK_THROWS_WITH(test::builtin_plugins().make_model("gru", c, {{"fused", "maybe"}}),
                    Contains("model 'gru': option 'fused' expects a boolean (true/false), got 'maybe'"));
  const auto model = test::builtin_plugins().make_model("rnn", c, {{"fused", "false"}});
  std::vector<std::string> names;
  for (const autodiff::Parameter* p : model->parameters()) names.push_back(p->name());
  CHECK(names == std::vector<std::string>{"embedding.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0",
                                          "rnn.bias_ih_l0", "rnn.bias_hh_l0", "head.weight", "head.bias"});
}
