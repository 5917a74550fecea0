#include "run_config.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace rwd::cli {

using json = nlohmann::json;

std::string RunConfig::to_json() const {
  json j;
  j["model"] = model;
  j["model_options"] = model_options;
  j["trainer"] = trainer;
  j["trainer_options"] = trainer_options;
  j["data"] = data;
  j["task"] = task;
  j["task_steps"] = task_steps;
  j["val_fraction"] = val_fraction;
  j["batch"] = batch;
  j["hidden"] = hidden;
  j["embedding"] = embedding;
  j["layers"] = layers;
  j["init_range"] = init_range;
  j["seed"] = seed;
  j["optimizer"] = {{"kind", optimizer.kind},
                    {"lr", optimizer.lr},
                    {"momentum", optimizer.momentum},
                    {"beta1", optimizer.beta1},
                    {"beta2", optimizer.beta2},
                    {"eps", optimizer.eps},
                    {"step_every", optimizer.step_every},
                    {"gamma", optimizer.gamma}};
  j["clip"] = clip;
  j["csv"] = {{"inputs", csv.inputs},
              {"targets", csv.targets},
              {"target_columns", csv.target_columns},
              {"reset_column", csv.reset_column}};
  std::vector<int> bytes(vocabulary.begin(), vocabulary.end());  // bytes, not text: any file can be a corpus
  j["vocabulary"] = bytes;
  return j.dump();
}

RunConfig RunConfig::from_json(const std::string& text) {
  RunConfig c;
  try {
    const json j = json::parse(text);
    c.model = j.at("model");
    c.model_options = j.at("model_options").get<std::map<std::string, std::string>>();
    c.trainer = j.at("trainer");
    c.trainer_options = j.at("trainer_options").get<std::map<std::string, std::string>>();
    c.data = j.at("data");
    c.task = j.at("task");
    c.task_steps = j.at("task_steps");
    c.val_fraction = j.at("val_fraction");
    c.batch = j.at("batch");
    c.hidden = j.at("hidden");
    c.embedding = j.at("embedding");
    c.layers = j.at("layers");
    c.init_range = j.at("init_range");
    c.seed = j.at("seed");
    const json& o = j.at("optimizer");
    c.optimizer = {o.at("kind"),  o.at("lr"),  o.at("momentum"),   o.at("beta1"),
                   o.at("beta2"), o.at("eps"), o.at("step_every"), o.at("gamma")};
    c.clip = j.at("clip");
    const json& csv = j.at("csv");
    c.csv = {csv.at("inputs"), csv.at("targets"), csv.at("target_columns"), csv.at("reset_column")};
    for (int b : j.at("vocabulary").get<std::vector<int>>()) c.vocabulary.push_back(static_cast<char>(b));
  } catch (const json::exception& e) {
    throw std::runtime_error(std::string("the run configuration stored with the model is unreadable: ") +
                             e.what());
  }
  return c;
}

models::ModelConfig RunConfig::model_config(const trainers::Dataset& shape) const {
  models::ModelConfig m;
  m.vocab_size = shape.vocab_size();
  m.input_size = shape.vocab_size() > 0 ? embedding : shape.input_size();
  m.hidden_size = hidden;
  m.layers = layers;
  m.output_size = shape.output_size();
  m.init_range = init_range;
  m.seed = seed;
  return m;
}

TextData load_text(RunConfig& config) {
  std::ifstream in(config.data, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open data file '" + config.data + "'");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  if (config.vocabulary.empty()) config.vocabulary = trainers::CharVocabulary::of(text).symbols;
  const std::vector<std::int32_t> ids = trainers::CharVocabulary{config.vocabulary}.encode(text);
  if (!(config.val_fraction >= 0 && config.val_fraction < 1))
    throw std::invalid_argument("--val-fraction must be in [0, 1)");
  const auto split = static_cast<std::size_t>(static_cast<double>(ids.size()) * (1 - config.val_fraction));
  const auto vocab = static_cast<std::int64_t>(config.vocabulary.size());
  TextData out;
  out.train = trainers::text_streams({ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(split)}, vocab,
                                     config.batch);
  const std::vector<std::int32_t> held_out(ids.begin() + static_cast<std::ptrdiff_t>(split), ids.end());
  if (held_out.size() > static_cast<std::size_t>(config.batch) * 2)
    out.validation = trainers::text_streams(held_out, vocab, config.batch);
  return out;
}

bool is_csv(const std::string& path) {
  return path.size() > 4 && path.substr(path.size() - 4) == ".csv";
}

SeriesSplit load_csv(const RunConfig& config) {
  const trainers::CsvTable table = trainers::CsvTable::read(config.data);
  if (!(config.val_fraction >= 0 && config.val_fraction < 1))
    throw std::invalid_argument("--val-fraction must be in [0, 1)");
  const auto split =
      static_cast<std::size_t>(static_cast<double>(table.rows.size()) * (1 - config.val_fraction));
  SeriesSplit out;
  out.train = trainers::csv_streams(table, config.csv, 0, split, config.batch);
  if (table.rows.size() - split > static_cast<std::size_t>(config.batch) * 2)
    out.validation = trainers::csv_streams(table, config.csv, split, table.rows.size(), config.batch);
  return out;
}

std::unique_ptr<models::Model> build_model(const plugins::Registry& registry, const RunConfig& config,
                                           const trainers::Dataset& shape) {
  return registry.make_model(config.model, config.model_config(shape), config.model_options);
}

}  // namespace rwd::cli
