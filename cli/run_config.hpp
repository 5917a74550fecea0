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
  std::string data;  // text file, character level; or a .csv time series
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
  std::string vocabulary;  // text runs: the characters, in token order

  std::string to_json() const;
  static RunConfig from_json(const std::string& json);
  models::ModelConfig model_config(const trainers::Dataset& shape) const;
};

// Text split into training and validation streams; the vocabulary is the config's, or the text's own.
struct TextData {
  std::unique_ptr<trainers::TokenData> train, validation;
};
TextData load_text(RunConfig& config);
bool is_csv(const std::string& path);
// A CSV time series split by rows into training and validation streams.
struct SeriesSplit {
  std::unique_ptr<trainers::SeriesData> train, validation;
};
SeriesSplit load_csv(const RunConfig& config);

// Builds the model a config describes and checks a sample of its data fits.
std::unique_ptr<models::Model> build_model(const plugins::Registry& registry, const RunConfig& config,
                                           const trainers::Dataset& shape);

}  // namespace rwd::cli
