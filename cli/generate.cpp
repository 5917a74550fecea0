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

// The model saved in `path` (a model.safetensors, or the directory holding one), with its run config.
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
  models::assign_parameters(tensors, *model, file);
  return model;
}

}  // namespace

int run_sample(int argc, const char* const* argv) {
  PluginOptions plugin_options;
  std::string checkpoint, prime = "\n";
  std::int64_t length = 500;
  double temperature = 0.8;
  std::uint64_t seed = 1;
  po::options_description options("rewind sample options");
  options.add_options()("help,h", "show this help")(
      "checkpoint", po::value(&checkpoint)->required(),
      "model.safetensors saved by rewind train, or its directory")(
      "prime", po::value(&prime)->default_value(prime), "text to start from")(
      "length", po::value(&length)->default_value(length), "characters to generate")(
      "temperature", po::value(&temperature)->default_value(temperature), "softmax temperature")(
      "seed", po::value(&seed)->default_value(seed), "sampling seed");
  plugin_options.add_to(options);
  po::variables_map vm;
  if (!parse_command_line(
          argc, argv, options, vm,
          "usage: rewind sample --checkpoint DIR [--prime TEXT] [--length N] [--temperature T]"))
    return 0;
  RunConfig config;
  auto model = load_saved(plugin_options.load(), checkpoint, config);
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
  std::string checkpoint, data;
  po::options_description options("rewind eval options");
  options.add_options()("help,h", "show this help")(
      "checkpoint", po::value(&checkpoint)->required(),
      "model.safetensors saved by rewind train, or its directory")("data", po::value(&data)->required(),
                                                                   "text file to evaluate on (all of it)");
  plugin_options.add_to(options);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, options, vm, "usage: rewind eval --checkpoint DIR --data FILE"))
    return 0;
  RunConfig config;
  auto model = load_saved(plugin_options.load(), checkpoint, config);
  config.data = data;
  config.val_fraction = 0;
  const TextData text = load_text(config);
  const trainers::Evaluation e = trainers::evaluate(*model, *text.train);
  std::printf(
      "%s: loss %.4f nats per character, %.3f bits per character, perplexity %.2f, accuracy %.3f (%lld "
      "characters)\n",
      data.c_str(), e.loss, e.loss / std::log(2.0), std::exp(e.loss),
      static_cast<double>(e.correct) / static_cast<double>(std::max<std::int64_t>(e.count, 1)),
      static_cast<long long>(e.count));
  return 0;
}

}  // namespace rwd::cli
