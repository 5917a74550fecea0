// rewind sample | eval: use a model saved by rewind train (its model.safetensors carries the run's config).
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
#include "rewind/trainers/evaluate.hpp"
#include "run_config.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace rwd::cli {
namespace {

// The model saved in `path` (a model.safetensors, a checkpoint.safetensors, or the directory holding them),
// with its run config.
std::unique_ptr<models::Model> load_saved(const plugins::Registry& registry, const std::string& path,
                                          RunConfig& config) {
  fs::path file = path;
  if (fs::is_directory(file)) file /= "model.safetensors";
  std::map<std::string, std::string> meta;
  const models::TensorMap tensors = models::load_safetensors(file, &meta);
  if (!meta.count("rewind.run"))
    throw std::runtime_error("'" + file.string() +
                             "' holds no run configuration (rewind.run); was it saved by rewind train?");
  config = RunConfig::from_json(meta.at("rewind.run"));
  if (config.vocabulary.empty()) throw std::runtime_error("'" + file.string() + "' is not a character model");
  trainers::TokenData shape(1, 1, static_cast<std::int64_t>(config.vocabulary.size()));
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
      "length", po::value(&length)->default_value(length), "characters to generate")(
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
  if (!vm.count("prime"))
    prime = config.vocabulary.find('\n') != std::string::npos ? "\n" : config.vocabulary.substr(0, 1);
  std::mt19937_64 rng(seed);
  const auto ids = trainers::sample(*model, trainers::CharVocabulary{config.vocabulary}.encode(prime), length,
                                    temperature, rng);
  std::string text = prime;
  for (std::int32_t id : ids) text += config.vocabulary[static_cast<std::size_t>(id)];
  std::printf("%s\n", text.c_str());
  return 0;
}

int run_eval(int argc, const char* const* argv) {
  PluginOptions plugin_options;
  std::string checkpoint, data, unknown = "fail";
  std::int64_t batch = 1;
  po::options_description options("rewind eval options");
  options.add_options()("help,h", "show this help")(
      "checkpoint", po::value(&checkpoint)->required(),
      "model.safetensors saved by rewind train, or its directory")("data", po::value(&data)->required(),
                                                                   "text file to evaluate on (all of it)")(
      "batch", po::value(&batch)->default_value(batch),
      "streams the text is cut into, each from a zero state (1: every character scored once, in order)")(
      "unknown", po::value(&unknown)->default_value(unknown),
      "characters outside the model's vocabulary: fail, or skip them");
  plugin_options.add_to(options, false);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, options, vm, "usage: rewind eval --checkpoint DIR --data FILE"))
    return 0;
  if (batch < 1) throw std::invalid_argument("--batch must be >= 1, got " + std::to_string(batch));
  if (unknown != "fail" && unknown != "skip")
    throw std::invalid_argument("--unknown must be fail or skip, got '" + unknown + "'");
  RunConfig config;
  auto model = load_saved(plugin_options.load(), checkpoint, config);
  std::string text = read_file(data);
  if (unknown == "skip") {
    const std::size_t before = text.size();
    std::erase_if(text, [&](char ch) { return config.vocabulary.find(ch) == std::string::npos; });
    if (text.size() != before)
      std::printf("skipped %zu characters outside the model's vocabulary\n", before - text.size());
  }
  const std::vector<std::int32_t> ids = trainers::CharVocabulary{config.vocabulary}.encode(text);
  const auto streams =
      trainers::text_streams(ids, static_cast<std::int64_t>(config.vocabulary.size()), batch);
  const trainers::Evaluation e = trainers::evaluate(*model, *streams);
  std::printf(
      "%s: loss %.4f nats per character, %.3f bits per character, perplexity %.2f, accuracy %.3f (%lld "
      "characters, batch %lld)\n",
      data.c_str(), e.loss, e.loss / std::log(2.0), std::exp(e.loss),
      static_cast<double>(e.correct) / static_cast<double>(std::max<std::int64_t>(e.count, 1)),
      static_cast<long long>(e.count), static_cast<long long>(batch));
  return 0;
}

}  // namespace rwd::cli
