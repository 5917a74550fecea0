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
#include "rewind/runtime/predictor.hpp"
#include "rewind/runtime/run_config.hpp"
#include "rewind/trainers/evaluate.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace rwd::cli {
using namespace rwd::runtime;  // RunConfig and the data and models it rebuilds
namespace {

// A saved run's model, saying so when it carries a note (the parameters of a stopped run).
Predictor load_saved(const PluginOptions& plugins, const std::string& checkpoint) {
  Predictor predictor(checkpoint, {plugins.files, plugins.directories});
  if (!predictor.note().empty()) std::fprintf(stderr, "note: %s\n", predictor.note().c_str());
  return predictor;
}

// rewind eval of a time series model: one stream through the file, its errors per column beside
// persistence's.
int eval_series(Predictor& predictor, const std::string& data, std::int64_t warmup_rows) {
  const HeldOutSeries held_out{read_series(predictor.config(), data), static_cast<std::size_t>(warmup_rows)};
  const Score score = evaluate_series(predictor.model(), held_out, predictor.config().transform);
  if (score.model.count == 0)
    throw std::invalid_argument("'" + data + "': no row to score (" + std::to_string(held_out.frame.rows()) +
                                " rows, --warmup-rows " + std::to_string(warmup_rows) + ")");
  std::printf("%s: %s\n", data.c_str(), describe_errors(score).c_str());
  return 0;
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
  Predictor predictor = load_saved(plugin_options, checkpoint);
  if (predictor.series())
    throw std::invalid_argument("'" + predictor.file() +
                                "' is a time series model: rewind predict forecasts it");
  const trainers::Vocabulary& vocabulary = predictor.config().vocabulary;
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
  std::ranges::copy(trainers::sample(predictor.model(), ids, length, temperature, rng),
                    std::back_inserter(ids));
  std::printf("%s\n", vocabulary.decode(ids).c_str());
  return 0;
}

int run_eval(int argc, const char* const* argv) {
  PluginOptions plugin_options;
  std::string checkpoint, data, unknown = "fail";
  std::int64_t batch = 1, warmup_rows = 0;
  po::options_description options("rewind eval options");
  options.add_options()("help,h", "show this help")(
      "checkpoint", po::value(&checkpoint)->required(),
      "model.safetensors saved by rewind train, or its directory")(
      "data", po::value(&data)->required(),
      "file to evaluate on, all of it (text, or a token file for a token-file run)")(
      "batch", po::value(&batch)->default_value(batch),
      "streams the text is cut into, each from a zero state (1: every character scored once, in order)")(
      "unknown", po::value(&unknown)->default_value(unknown),
      "symbols outside the model's vocabulary: fail, or skip them (a vocabulary with <unk>: always <unk>)")(
      "warmup-rows", po::value(&warmup_rows),
      "time series: rows run but not scored (default: the run's --warmup-rows)");
  plugin_options.add_to(options, false);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, options, vm, "usage: rewind eval --checkpoint DIR --data FILE"))
    return 0;
  if (batch < 1) throw std::invalid_argument("--batch must be >= 1, got " + std::to_string(batch));
  if (unknown != "fail" && unknown != "skip")
    throw std::invalid_argument("--unknown must be fail or skip, got '" + unknown + "'");
  Predictor predictor = load_saved(plugin_options, checkpoint);
  predictor.check_data(data);
  const RunConfig& config = predictor.config();
  if (predictor.series()) {
    if (!vm["batch"].defaulted() || !vm["unknown"].defaulted())
      throw std::invalid_argument("--batch and --unknown apply to token models: a series is one stream");
    if (warmup_rows < 0) throw std::invalid_argument("--warmup-rows must be >= 0");
    return eval_series(predictor, data, vm.count("warmup-rows") ? warmup_rows : config.warmup_rows);
  }
  if (vm.count("warmup-rows")) throw std::invalid_argument("--warmup-rows applies to time series models");
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
  const trainers::Evaluation e = trainers::evaluate(predictor.model(), *streams);
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
