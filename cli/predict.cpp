// rewind predict: a saved model's predictions in the data's units. Time series: one-step-ahead predictions of
// every row, a forecast of --horizon steps from the end, rolling-origin forecasts (--every); token models:
// the
// --top-k next tokens after every token. docs/timeseries.md.
#include <algorithm>
#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>
#include <numeric>
#include <sstream>

#include "commands.hpp"
#include "parse.hpp"
#include "plot.hpp"
#include "plugin_options.hpp"
#include "rewind/runtime/predictor.hpp"

namespace po = boost::program_options;

namespace rwd::cli {
using namespace rwd::runtime;

namespace {

struct PredictOptions {
  std::string checkpoint, data, out, future;
  ForecastOptions forecast;
  std::int64_t top_k = 0;
  PluginOptions plugins;
};

// Every token's --top-k most likely successors with their probabilities, as CSV, one line per token.
std::string top_k_csv(Predictor& predictor, const std::string& data, std::int64_t k) {
  const trainers::Vocabulary& vocabulary = predictor.config().vocabulary;
  if (vocabulary.symbols.empty())
    throw std::runtime_error("'" + predictor.file() +
                             "' was trained on token ids without a vocabulary: --top-k "
                             "has no symbols to print");
  std::string text;
  if (data == "-") {
    std::ostringstream all;
    all << std::cin.rdbuf();
    text = all.str();
  } else {
    text = read_file(data);
  }
  const std::vector<std::int32_t> ids = vocabulary.encode(text, data == "-" ? "standard input" : data);
  std::ostringstream out;
  out << "position,token,next";
  for (std::int64_t r = 1; r <= k; ++r) out << ",top" << r << ",p" << r;
  out << '\n';
  std::vector<std::size_t> order(static_cast<std::size_t>(vocabulary.size()));
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::vector<double> p = predictor.step_token(ids[i]);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](std::size_t a, std::size_t b) { return p[a] > p[b]; });
    const auto symbol = [&](std::int32_t id) {
      return csv_cell(printable(vocabulary.symbols[static_cast<std::size_t>(id)]));
    };
    out << i << ',' << symbol(ids[i]) << ',' << (i + 1 < ids.size() ? symbol(ids[i + 1]) : "");
    for (std::int64_t r = 0; r < k; ++r) {
      char probability[32];
      std::snprintf(probability, sizeof probability, "%.6g", p[order[static_cast<std::size_t>(r)]]);
      out << ',' << symbol(static_cast<std::int32_t>(order[static_cast<std::size_t>(r)])) << ','
          << probability;
    }
    out << '\n';
  }
  return out.str();
}

std::string series_csv(Predictor& predictor, PredictOptions& o) {
  const trainers::SeriesFrame frame = read_series(predictor.config(), o.data);
  trainers::SeriesFrame future;
  if (!o.future.empty()) {
    // The future rows hold the inputs that are not targets (and keys); their targets are what is forecast.
    RunConfig reading = predictor.config();
    reading.csv.missing = trainers::Missing::error;
    reading.csv.targets = reading.csv.target_columns = {};
    reading.csv.reset_column.clear();
    reading.csv.inputs.erase(std::remove_if(reading.csv.inputs.begin(), reading.csv.inputs.end(),
                                            [&](const std::string& c) {
                                              return std::ranges::find(predictor.targets(), c) !=
                                                     predictor.targets().end();
                                            }),
                             reading.csv.inputs.end());
    if (reading.csv.inputs.empty())
      throw std::invalid_argument("--future: every input of the model is a target: nothing to read from it");
    future = read_series(reading, o.future);
    o.forecast.future = &future;
  }
  std::ostringstream out;
  write_predictions(out, frame.key_names, predictor.targets(), predict_frame(predictor, frame, o.forecast));
  return out.str();
}

}  // namespace

int run_predict(int argc, const char* const* argv) {
  PredictOptions o;
  po::options_description options("rewind predict options");
  options.add_options()("help,h", "show this help")("checkpoint", po::value(&o.checkpoint)->required(),
                                                    "a run's directory or one of its .safetensors files")(
      "data", po::value(&o.data)->required(), "rows (CSV) or text to predict from; - reads standard input")(
      "out", po::value(&o.out), "write the predictions (CSV) here, atomically (default: standard output)")(
      "horizon", po::value(&o.forecast.horizon)->default_value(o.forecast.horizon),
      "time series: steps forecast past the last row, predictions fed back where a target is an input")(
      "every", po::value(&o.forecast.every)->default_value(o.forecast.every),
      "time series: also forecast --horizon steps after every M rows (rolling origin; 0: only from the end)")(
      "future", po::value(&o.future),
      "time series: a CSV of the rows after the data, for inputs that are not targets (and keys)")(
      "top-k", po::value(&o.top_k)->default_value(5), "token models: the K most likely next tokens");
  o.plugins.add_to(options, false);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, options, vm,
                          "usage: rewind predict --checkpoint DIR --data FILE|- [--out FILE] [--horizon N] "
                          "[--every M] [--future FILE] [--top-k K]"))
    return 0;
  Predictor predictor(o.checkpoint, {o.plugins.files, o.plugins.directories});
  predictor.check_data(o.data);
  for (const char* name : {"horizon", "every", "future"})
    if (!predictor.series() && vm.count(name) && !vm[name].defaulted())
      throw std::invalid_argument(std::string("--") + name + " applies to time series models; '" +
                                  predictor.file() + "' reads tokens (--top-k)");
  if (predictor.series() && !vm["top-k"].defaulted())
    throw std::invalid_argument("--top-k applies to token models; '" + predictor.file() +
                                "' is a time series model");
  if (o.top_k < 1) throw std::invalid_argument("--top-k must be >= 1");
  o.top_k = std::min<std::int64_t>(o.top_k, predictor.config().token_count());
  const std::string csv =
      predictor.series() ? series_csv(predictor, o) : top_k_csv(predictor, o.data, o.top_k);
  if (o.out.empty()) {
    std::fwrite(csv.data(), 1, csv.size(), stdout);
  } else {
    write_text_file(o.out, csv, "--out");
    std::fprintf(stderr, "wrote %s\n", o.out.c_str());
  }
  return 0;
}

}  // namespace rwd::cli
