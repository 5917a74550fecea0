// rewind sample | eval: use a model saved by rewind train (its model.safetensors carries the run's config).
#include <algorithm>
#include <boost/program_options.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <random>

#include "commands.hpp"
#include "parse.hpp"
#include "plugin_options.hpp"
#include "rewind/models/safetensors.hpp"
#include "rewind/runtime/run_config.hpp"
#include "rewind/trainers/evaluate.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace rwd::cli {
using namespace rwd::runtime;  // RunConfig and the data and models it rebuilds
namespace {

// The model saved in `path` (a model.safetensors, a checkpoint.safetensors, or the directory holding them),
// with its run config.
std::unique_ptr<models::Model> load_saved(plugins::Registry registry, const std::string& path,
                                          RunConfig& config) {
  fs::path file = path;
  if (fs::is_directory(file)) file /= "model.safetensors";
  std::map<std::string, std::string> meta;
  const models::TensorMap tensors = models::load_safetensors(file, &meta);
  if (!meta.count("rewind.run"))
    throw std::runtime_error("'" + file.string() +
                             "' holds no run configuration (rewind.run); was it saved by rewind train?");
  config = RunConfig::from_json(meta.at("rewind.run"));
  if (config.token_count() == 0) throw std::runtime_error("'" + file.string() + "' is not a token model");
  trainers::TokenData shape(1, 1, config.token_count());
  auto model = build_model(registry, config, shape);
  // A checkpoint also holds optimizer and trainer state: only its parameters are read.
  models::assign_parameters(tensors, *model, file, !meta.count("rewind.checkpoint"));
  if (meta.count("rewind.note")) std::fprintf(stderr, "note: %s\n", meta.at("rewind.note").c_str());
  return model;
}

}  // namespace

int run_sample(int argc, const char* const* argv) {
  PluginOptions plugin_options;
  std::string checkpoint, prime;
  std::int64_t length = 500;
  double temperature = 0.8;
  std::uint64_t seed = 1;
  po::options_description options("rewind sample options");
  options.add_options()("help,h", "show this help")(
      "checkpoint", po::value(&checkpoint)->required(),
      "model.safetensors saved by rewind train, or its directory")(
      "prime", po::value(&prime), "text to start from (default: a newline, or the first symbol without one)")(
      "length", po::value(&length)->default_value(length), "tokens to generate")(
      "temperature", po::value(&temperature)->default_value(temperature, shortest(temperature)),
      "softmax temperature, > 0 (towards 0: the most likely character every time)")(
      "seed", po::value(&seed)->default_value(seed), "sampling seed");
  plugin_options.add_to(options, false);
  po::variables_map vm;
  if (!parse_command_line(
          argc, argv, options, vm,
          "usage: rewind sample --checkpoint DIR [--prime TEXT] [--length N] [--temperature T]"))
    return 0;
  if (length < 0) throw std::invalid_argument("--length must be >= 0, got " + std::to_string(length));
  if (!(temperature > 0)) throw std::invalid_argument("--temperature must be > 0");
  RunConfig config;
  auto model = load_saved(plugin_options.load(), checkpoint, config);
  const trainers::Vocabulary& vocabulary = config.vocabulary;
  if (vocabulary.symbols.empty())
    throw std::runtime_error("'" + checkpoint +
                             "' was trained on token ids without a vocabulary: nothing to print them with "
                             "(train with --vocab FILE, written by rewind tokenize)");
  std::vector<std::int32_t> ids;
  if (vm.count("prime")) {
    ids = vocabulary.encode(prime, "--prime", {.final_eos = false});
    if (ids.empty()) throw std::invalid_argument("--prime holds no token");
  } else {  // a line start: the newline or <eos>, else the first symbol
    const std::string start(vocabulary.mode == trainers::TokenMode::words ? trainers::end_of_line_token
                                                                          : "\n");
    const auto it = std::find(vocabulary.symbols.begin(), vocabulary.symbols.end(), start);
    ids = {it == vocabulary.symbols.end() ? 0 : static_cast<std::int32_t>(it - vocabulary.symbols.begin())};
  }
  std::mt19937_64 rng(seed);
  std::ranges::copy(trainers::sample(*model, ids, length, temperature, rng), std::back_inserter(ids));
  std::printf("%s\n", vocabulary.decode(ids).c_str());
  return 0;
}

int run_eval(int argc, const char* const* argv) {
  PluginOptions plugin_options;
  std::string checkpoint, data, unknown = "fail";
  std::int64_t batch = 1;
  po::options_description options("rewind eval options");
  options.add_options()("help,h", "show this help")(
      "checkpoint", po::value(&checkpoint)->required(),
      "model.safetensors saved by rewind train, or its directory")(
      "data", po::value(&data)->required(),
      "file to evaluate on, all of it (text, or a token file for a token-file run)")(
      "batch", po::value(&batch)->default_value(batch),
      "streams the text is cut into, each from a zero state (1: every character scored once, in order)")(
      "unknown", po::value(&unknown)->default_value(unknown),
      "symbols outside the model's vocabulary: fail, or skip them (a vocabulary with <unk>: always <unk>)");
  plugin_options.add_to(options, false);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, options, vm, "usage: rewind eval --checkpoint DIR --data FILE"))
    return 0;
  if (batch < 1) throw std::invalid_argument("--batch must be >= 1, got " + std::to_string(batch));
  if (unknown != "fail" && unknown != "skip")
    throw std::invalid_argument("--unknown must be fail or skip, got '" + unknown + "'");
  RunConfig config;
  auto model = load_saved(plugin_options.load(), checkpoint, config);
  std::int64_t skipped = 0, as_unknown = 0;
  const auto streams = token_streams(
      config, data, batch, {.skip = unknown == "skip", .skipped = &skipped, .as_unknown = &as_unknown});
  const bool characters =
      config.vocabulary.mode != trainers::TokenMode::words && !config.vocabulary.symbols.empty();
  const char* unit = characters                                             ? "character"
                     : config.vocabulary.mode == trainers::TokenMode::words ? "word"
                                                                            : "token";
  if (skipped > 0)
    std::printf("skipped %lld %ss outside the model's vocabulary\n", static_cast<long long>(skipped), unit);
  if (as_unknown > 0)
    std::printf("read %lld %ss outside the model's vocabulary as <unk>\n", static_cast<long long>(as_unknown),
                unit);
  const trainers::Evaluation e = trainers::evaluate(*model, *streams);
  const double accuracy =
      static_cast<double>(e.correct) / static_cast<double>(std::max<std::int64_t>(e.count, 1));
  if (characters)
    std::printf(
        "%s: loss %.4f nats per character, %.3f bits per character, perplexity %.2f, accuracy %.3f (%lld "
        "characters, batch %lld)\n",
        data.c_str(), e.loss, e.loss / std::log(2.0), std::exp(e.loss), accuracy,
        static_cast<long long>(e.count), static_cast<long long>(batch));
  else
    std::printf("%s: loss %.4f nats per token, perplexity %.2f, accuracy %.3f (%lld tokens, batch %lld)\n",
                data.c_str(), e.loss, std::exp(e.loss), accuracy, static_cast<long long>(e.count),
                static_cast<long long>(batch));
  return 0;
}

}  // namespace rwd::cli
