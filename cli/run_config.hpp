// Everything that defines a training run, as the train command reads it from its options and as
// checkpoints store it (JSON), so that --resume and sample rebuild exactly the same model and data.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "rewind/plugins/registry.hpp"
#include "rewind/trainers/data.hpp"
#include "rewind/trainers/optim.hpp"

namespace rwd::cli {

struct RunConfig {
  std::string model = "lstm";
  std::map<std::string, std::string> model_options;
  std::string trainer = "truncated";
  std::map<std::string, std::string> trainer_options;
  std::string data;  // text file, character level; or a .csv time series (an absolute path once trained)
  // What the data file held when the run started (size in bytes, XXH64 as hex), so that a resume notices a
  // changed file. Empty for tasks and for runs saved before they were recorded.
  std::int64_t data_bytes = -1;
  std::string data_xxh64;
  trainers::CsvOptions csv;
  std::string task;  // or a synthetic task: recall:L, adding:L, delay:D
  std::int64_t task_steps = 1000;
  double val_fraction = 0.1;
  std::int64_t batch = 32, hidden = 128, embedding = 0;
  int layers = 1;
  double init_range = 0;
  std::uint64_t seed = 1;
  trainers::OptimizerConfig optimizer;
  double clip = 0;
  // Updates between validation runs (0: only at the end). Part of the run: the plateau schedule, the best
  // checkpoint and early stopping count validation runs, so a resume keeps it unless told otherwise.
  std::int64_t eval_every = 500;
  std::string vocabulary;  // text runs: the characters, in token order

  // Refuses sizes and rates that cannot train (batch 0, a negative clip, ...), naming the option.
  void validate() const;
  // Makes data absolute and records its size and hash; check_data_unchanged compares them on resume.
  void fingerprint_data();
  void check_data_unchanged() const;

  std::string to_json() const;
  static RunConfig from_json(const std::string& json);
  models::ModelConfig model_config(const trainers::Dataset& shape) const;
};

// Validation streams of text and CSV data, whatever the training batch: evaluation results must not depend
// on --batch (PyTorch's word_language_model evaluates with 10 as well). rewind eval uses its own --batch.
constexpr std::int64_t validation_batch = 10;

// Text split into training and validation streams; the vocabulary is the config's, or the text's own.
struct TextData {
  std::unique_ptr<trainers::TokenData> train, validation;
  std::string no_validation_reason;  // when validation is null although some text was held out
};
// The whole file; errors name it and say why.
std::string read_file(const std::string& path);

// Validation, when held out, is cut into `validation_streams` streams; note says why there is none.
TextData load_text(RunConfig& config, std::int64_t validation_streams = validation_batch);
// A .csv file, whatever the case of its extension.
bool is_csv(const std::string& path);
// A CSV time series split by rows into training and validation streams.
struct SeriesSplit {
  std::unique_ptr<trainers::SeriesData> train, validation;
  std::string no_validation_reason;
};
SeriesSplit load_csv(const RunConfig& config);

// Builds the model a config describes and checks a sample of its data fits.
std::unique_ptr<models::Model> build_model(const plugins::Registry& registry, const RunConfig& config,
                                           const trainers::Dataset& shape);

}  // namespace rwd::cli
