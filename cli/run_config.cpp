#include "run_config.hpp"

#include <xxhash.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
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
  j["data_bytes"] = data_bytes;
  j["data_xxh64"] = data_xxh64;
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
                    {"gamma", optimizer.gamma},
                    {"weight_decay", optimizer.weight_decay},
                    {"nesterov", optimizer.nesterov},
                    {"alpha", optimizer.alpha},
                    {"schedule", optimizer.schedule},
                    {"warmup", optimizer.warmup},
                    {"lr_min", optimizer.lr_min},
                    {"total_updates", optimizer.total_updates},
                    {"patience", optimizer.patience}};
  j["eval_every"] = eval_every;
  j["clip"] = clip;
  j["csv"] = {{"inputs", csv.inputs},
              {"targets", csv.targets},
              {"target_columns", csv.target_columns},
              {"reset_column", csv.reset_column}};
  // Bytes 0-255, not text (any file can be a corpus) and not signed chars (Python's bytes() takes 0-255).
  std::vector<int> bytes;
  for (char ch : vocabulary) bytes.push_back(static_cast<unsigned char>(ch));
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
    c.data_bytes = j.value("data_bytes", std::int64_t{-1});
    c.data_xxh64 = j.value("data_xxh64", std::string());
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
    // Added later: runs saved before have their defaults.
    c.optimizer.weight_decay = o.value("weight_decay", 0.0);
    c.optimizer.nesterov = o.value("nesterov", false);
    c.optimizer.alpha = o.value("alpha", 0.99);
    c.optimizer.schedule = o.value("schedule", std::string("constant"));
    c.optimizer.warmup = o.value("warmup", std::int64_t{0});
    c.optimizer.lr_min = o.value("lr_min", 0.0);
    c.optimizer.total_updates = o.value("total_updates", std::int64_t{0});
    c.optimizer.patience = o.value("patience", std::int64_t{10});
    c.eval_every = j.value("eval_every", c.eval_every);
    c.clip = j.at("clip");
    const json& csv = j.at("csv");
    c.csv = {csv.at("inputs"), csv.at("targets"), csv.at("target_columns"), csv.at("reset_column")};
    for (int b : j.at("vocabulary").get<std::vector<int>>()) {
      if (b < -128 || b > 255)
        throw std::runtime_error("vocabulary byte " + std::to_string(b) + " out of range");
      c.vocabulary.push_back(static_cast<char>(b));  // runs saved before 0.1.1 stored signed chars
    }
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("the run configuration stored with the model is unreadable: ") +
                             e.what());
  }
  return c;
}

void RunConfig::validate() const {
  auto refuse = [](const std::string& what) { throw std::invalid_argument(what); };
  if (batch < 1) refuse("--batch must be >= 1, got " + std::to_string(batch));
  if (hidden < 1) refuse("--hidden must be >= 1, got " + std::to_string(hidden));
  if (layers < 1) refuse("--layers must be >= 1, got " + std::to_string(layers));
  if (embedding < 0)
    refuse("--embedding must be >= 0 (0: the hidden size), got " + std::to_string(embedding));
  if (task_steps < 1) refuse("--task-steps must be >= 1, got " + std::to_string(task_steps));
  if (!(init_range >= 0)) refuse("--init-range must be >= 0 (0: PyTorch's initialisation)");
  if (!(val_fraction >= 0 && val_fraction < 1)) refuse("--val-fraction must be in [0, 1)");
  if (!(clip >= 0 && std::isfinite(clip)))
    refuse("--clip must be >= 0 (0: no clipping), got " + std::to_string(clip));
  trainers::Optimizer{optimizer};  // refuses its own options, naming them
}

namespace {
struct FileDigest {
  std::int64_t bytes = 0;
  std::string xxh64;
};
FileDigest digest_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open data file '" + path + "': " + std::strerror(errno));
  XXH64_state_t* state = XXH64_createState();
  XXH64_reset(state, 0);
  std::vector<char> buffer(1 << 20);
  FileDigest d;
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    XXH64_update(state, buffer.data(), static_cast<std::size_t>(in.gcount()));
    d.bytes += in.gcount();
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(XXH64_digest(state)));
  XXH64_freeState(state);
  d.xxh64 = hex;
  return d;
}
}  // namespace

void RunConfig::fingerprint_data() {
  if (data.empty()) return;
  std::error_code ec;
  if (std::filesystem::is_directory(data, ec))
    throw std::invalid_argument("--data '" + data + "' is a directory, not a text or CSV file");
  data = std::filesystem::absolute(data).lexically_normal().string();
  const FileDigest d = digest_of(data);
  data_bytes = d.bytes;
  data_xxh64 = d.xxh64;
}

void RunConfig::check_data_unchanged() const {
  if (data.empty() || data_xxh64.empty()) return;
  const FileDigest d = digest_of(data);
  if (d.bytes != data_bytes || d.xxh64 != data_xxh64)
    throw std::runtime_error("data file '" + data + "' changed since the run was saved (" +
                             std::to_string(d.bytes) + " bytes, XXH64 " + d.xxh64 + "; the run saw " +
                             std::to_string(data_bytes) + " bytes, XXH64 " + data_xxh64 +
                             "): resuming on other data would not continue the same run");
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

std::string read_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw std::invalid_argument("data file '" + path + "' is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open data file '" + path + "': " + std::strerror(errno));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw std::runtime_error("cannot read data file '" + path + "': " + std::strerror(errno));
  return buffer.str();
}

TextData load_text(RunConfig& config, std::int64_t validation_streams) {
  const std::string text = read_file(config.data);
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
  if (held_out.size() > static_cast<std::size_t>(validation_streams) * 2)
    out.validation = trainers::text_streams(held_out, vocab, validation_streams);
  else if (!held_out.empty())
    out.no_validation_reason = "no validation: " + std::to_string(held_out.size()) +
                               " held-out characters are too few for " + std::to_string(validation_streams) +
                               " streams of at least 2";
  return out;
}

bool is_csv(const std::string& path) {
  std::string extension = std::filesystem::path(path).extension().string();
  for (char& ch : extension) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return extension == ".csv";
}

SeriesSplit load_csv(const RunConfig& config) {
  const trainers::CsvTable table = trainers::CsvTable::read(config.data);
  if (!(config.val_fraction >= 0 && config.val_fraction < 1))
    throw std::invalid_argument("--val-fraction must be in [0, 1)");
  const auto split =
      static_cast<std::size_t>(static_cast<double>(table.rows.size()) * (1 - config.val_fraction));
  SeriesSplit out;
  out.train = trainers::csv_streams(table, config.csv, 0, split, config.batch);
  const std::size_t held_out = table.rows.size() - split;
  if (held_out > static_cast<std::size_t>(validation_batch) * 2)
    out.validation = trainers::csv_streams(table, config.csv, split, table.rows.size(), validation_batch);
  else if (held_out > 0)
    out.no_validation_reason = "no validation: " + std::to_string(held_out) +
                               " held-out rows are too few for " + std::to_string(validation_batch) +
                               " streams of at least 2";
  return out;
}

std::unique_ptr<models::Model> build_model(const plugins::Registry& registry, const RunConfig& config,
                                           const trainers::Dataset& shape) {
  return registry.make_model(config.model, config.model_config(shape), config.model_options);
}

}  // namespace rwd::cli
