#include "rewind/runtime/run_config.hpp"

#include <xxhash.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "rewind/runtime/text.hpp"

namespace rwd::runtime {

using json = nlohmann::json;

namespace {
// bytes: the byte values 0-255 (not text: any file can be a corpus; not signed chars: Python's bytes() takes
// 0-255), as runs stored them before --tokens, and "<unk>" as a string; chars and words: UTF-8 strings.
void put_vocabulary(json& j, const trainers::Vocabulary& v) {
  j["tokens"] = trainers::name_of(v.mode);
  if (v.mode == trainers::TokenMode::bytes) {
    json bytes = json::array();
    for (const std::string& s : v.symbols)
      bytes.push_back(s.size() == 1 ? json(static_cast<unsigned char>(s[0])) : json(s));
    j["vocabulary"] = bytes;
  } else {
    j["vocabulary"] = v.symbols;
  }
}

trainers::Vocabulary get_vocabulary(const json& j) {
  trainers::Vocabulary v;
  v.mode = trainers::token_mode(j.value("tokens", std::string("bytes")));
  if (v.mode != trainers::TokenMode::bytes) {
    v.symbols = j.at("vocabulary").get<std::vector<std::string>>();
    return v;
  }
  for (const json& symbol : j.at("vocabulary")) {
    if (symbol.is_string() && symbol.get<std::string>() == trainers::unknown_token) {
      v.symbols.emplace_back(trainers::unknown_token);
      continue;
    }
    const int b = symbol.get<int>();
    if (b < -128 || b > 255)
      throw std::runtime_error("vocabulary byte " + std::to_string(b) + " out of range");
    v.symbols.emplace_back(1, static_cast<char>(b));  // runs saved before 0.1.1 stored signed chars
  }
  return v;
}
}  // namespace

std::string RunConfig::to_json() const {
  json j;
  j["model"] = model;
  j["model_options"] = model_options;
  j["model_plugin"] = {{"file", model_plugin_file}, {"xxh64", model_plugin_xxh64}};
  j["trainer"] = trainer;
  j["trainer_options"] = trainer_options;
  j["data"] = data;
  j["data_bytes"] = data_bytes;
  j["data_xxh64"] = data_xxh64;
  j["val_data"] = val_data;
  j["test_data"] = test_data;
  j["vocab_size"] = vocab_size;
  j["token_dtype"] = token_dtype;
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
  j["accumulate"] = accumulate;
  j["clip"] = clip;
  j["flush_denormals"] = flush_denormals;
  j["precision"] = precision;
  j["csv"] = {{"inputs", csv.inputs},
              {"targets", csv.targets},
              {"target_columns", csv.target_columns},
              {"reset_column", csv.reset_column},
              {"key_columns", csv.key_columns},
              {"missing", trainers::name_of(csv.missing)},
              {"format", format},
              {"delimiter", delimiter},
              {"warmup_rows", warmup_rows}};
  json scales = json::object();
  for (const auto& [column, s] : transform.columns) scales[column] = {{"shift", s.shift}, {"scale", s.scale}};
  j["transform"] = {
      {"normalize", transform.normalize}, {"difference", transform.difference}, {"columns", scales}};
  put_vocabulary(j, vocabulary);
  return j.dump();
}

RunConfig RunConfig::from_json(const std::string& text) {
  RunConfig c;
  try {
    const json j = json::parse(text);
    c.model = j.at("model");
    c.model_options = j.at("model_options").get<std::map<std::string, std::string>>();
    if (j.contains("model_plugin"))
      c.model_plugin_file = j["model_plugin"].at("file"),
      c.model_plugin_xxh64 = j["model_plugin"].at("xxh64");
    c.trainer = j.at("trainer");
    c.trainer_options = j.at("trainer_options").get<std::map<std::string, std::string>>();
    c.data = j.at("data");
    c.data_bytes = j.value("data_bytes", std::int64_t{-1});
    c.data_xxh64 = j.value("data_xxh64", std::string());
    c.val_data = j.value("val_data", std::string());
    c.test_data = j.value("test_data", std::string());
    c.vocab_size = j.value("vocab_size", std::int64_t{0});
    c.token_dtype = j.value("token_dtype", std::string());
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
    c.accumulate = j.value("accumulate", c.accumulate);
    c.clip = j.at("clip");
    c.flush_denormals = j.value("flush_denormals", false);
    c.precision = j.value("precision", std::string("f32"));
    const json& csv = j.at("csv");
    c.csv = {csv.at("inputs"), csv.at("targets"), csv.at("target_columns"), csv.at("reset_column")};
    // Added with issue 23: runs saved before read their series as they did (no keys, no gaps, no transform).
    c.csv.key_columns = csv.value("key_columns", std::vector<std::string>());
    c.csv.missing = trainers::missing_policy(csv.value("missing", std::string("error")));
    c.format = csv.value("format", std::string());
    c.delimiter = csv.value("delimiter", std::string(","));
    c.warmup_rows = csv.value("warmup_rows", std::int64_t{0});
    c.transform = {"none", false, {}};
    if (j.contains("transform")) {
      const json& t = j.at("transform");
      c.transform.normalize = t.at("normalize");
      c.transform.difference = t.at("difference");
      for (const auto& [column, s] : t.at("columns").items())
        c.transform.columns[column] = {s.at("shift"), s.at("scale")};
    }
    c.vocabulary = get_vocabulary(j);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("the run configuration stored with the model is unreadable: ") +
                             e.what());
  }
  return c;
}

std::string RunOutputs::to_json() const {
  return json{{"save_every", save_every},
              {"save_every_seconds", save_every_seconds},
              {"keep_checkpoints", keep_checkpoints},
              {"keep_best", keep_best},
              {"early_stop", early_stop},
              {"on_nonfinite", on_nonfinite},
              {"max_skips", max_skips},
              {"metrics", metrics},
              {"log_every", log_every}}
      .dump();
}

void RunOutputs::validate(bool saving) const {
  if (on_nonfinite != "stop" && on_nonfinite != "skip")
    throw std::invalid_argument("--on-nonfinite must be stop or skip, got '" + on_nonfinite + "'");
  if (max_skips < 1) throw std::invalid_argument("--max-skips must be >= 1");
  if (save_every < 0 || save_every_seconds < 0 || keep_checkpoints < 1)
    throw std::invalid_argument(
        "--save-every and --save-every-seconds must be >= 0, --keep-checkpoints >= 1");
  if ((save_every > 0 || save_every_seconds > 0) && !saving)
    throw std::invalid_argument("--save-every and --save-every-seconds need --save DIR");
  if (keep_best && !saving) throw std::invalid_argument("--keep-best needs --save DIR");
  if (early_stop < 0 || log_every < 0)
    throw std::invalid_argument("--early-stop and --log-every must be >= 1");
}

RunOutputs RunOutputs::from_metadata(const std::map<std::string, std::string>& metadata) {
  RunOutputs o;
  const auto stored = metadata.find(metadata_key);
  if (stored == metadata.end()) return o;  // runs saved before it was recorded resume with the defaults
  try {
    const json j = json::parse(stored->second);
    o = {j.at("save_every"), j.at("save_every_seconds"), j.at("keep_checkpoints"), j.at("keep_best"),
         j.at("early_stop"), j.at("on_nonfinite"),       j.at("max_skips"),        j.at("metrics"),
         j.at("log_every")};
  } catch (const std::exception& e) {
    throw std::runtime_error(
        std::string("the run's output options stored in the checkpoint are unreadable: ") + e.what());
  }
  return o;
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
  if (vocab_size < 0) refuse("--vocab-size must be >= 0, got " + std::to_string(vocab_size));
  if (token_file() && vocab_size < 1)
    refuse("a token file (--token-dtype) needs --vocab-size N or --vocab FILE");
  if (!(clip >= 0 && std::isfinite(clip)))
    refuse("--clip must be >= 0 (0: no clipping), got " + std::to_string(clip));
  if (precision != "f32" && precision != "bf16")
    refuse("--precision must be f32 or bf16, got '" + precision + "'");
  if (precision == "bf16")
    if (const std::string why = autodiff::bf16_unavailable_reason(); !why.empty())
      refuse("--precision bf16 cannot run here: " + why);
  trainers::Optimizer{optimizer};  // refuses its own options, naming them
}

namespace {
struct FileDigest {
  std::int64_t bytes = 0;
  std::string xxh64;
};
FileDigest digest_of(const std::string& path) {
  trainers::require_regular_file(path);
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

void RunConfig::record_model_plugin(const plugins::Registry& registry) {
  model_plugin_file = registry.find(plugins::Kind::model, model).file.string();
  model_plugin_xxh64 = digest_of(model_plugin_file).xxh64;
}

void RunConfig::fingerprint_data() {
  if (data.empty()) return;
  trainers::require_regular_file(data);
  data = std::filesystem::absolute(data).lexically_normal().string();
  for (std::string* held_out : {&val_data, &test_data})
    if (!held_out->empty()) {
      trainers::require_regular_file(*held_out, held_out == &val_data ? "validation file" : "test file");
      *held_out = std::filesystem::absolute(*held_out).lexically_normal().string();
    }
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
  trainers::require_regular_file(path);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open data file '" + path + "': " + std::strerror(errno));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw std::runtime_error("cannot read data file '" + path + "': " + std::strerror(errno));
  return buffer.str();
}

namespace {
// The streams of text ids, with errors naming the file.
std::unique_ptr<trainers::Dataset> streams_of(const std::vector<std::int32_t>& ids, std::int64_t vocab,
                                              std::int64_t batch, const std::string& path) {
  try {
    return trainers::text_streams(ids, vocab, batch);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("'" + path + "': " + e.what());
  }
}
}  // namespace

std::unique_ptr<trainers::Dataset> token_streams(const RunConfig& config, const std::string& path,
                                                 std::int64_t batch, const UnknownSymbols& unknown) {
  if (config.token_file()) {
    auto file = std::make_shared<const trainers::TokenFile>(path, trainers::token_dtype(config.token_dtype),
                                                            config.vocab_size);
    return std::make_unique<trainers::TokenFileStreams>(file, 0, file->size(), batch);
  }
  const std::vector<std::int32_t> ids = config.vocabulary.encode(
      read_file(path), path,
      {.skip_unknown = unknown.skip, .skipped = unknown.skipped, .as_unknown = unknown.as_unknown});
  return streams_of(ids, config.token_count(), batch, path);
}

std::string unknown_note(const std::string& what, const std::string& path, std::int64_t count) {
  if (count == 0) return {};
  return what + " '" + path + "': " + std::to_string(count) + " symbol(s) the training text lacks, read as " +
         std::string(trainers::unknown_token);
}

TextData load_text(RunConfig& config, std::int64_t validation_streams) {
  if (!(config.val_fraction >= 0 && config.val_fraction < 1))
    throw std::invalid_argument("--val-fraction must be in [0, 1)");
  const bool held_out_file = !config.val_data.empty();
  TextData out;
  std::int64_t held_out = 0;  // tokens of the data file held out for validation
  if (config.token_file()) {
    auto file = std::make_shared<const trainers::TokenFile>(
        config.data, trainers::token_dtype(config.token_dtype), config.vocab_size);
    const std::int64_t n = file->size();
    const auto split =
        held_out_file ? n : static_cast<std::int64_t>(static_cast<double>(n) * (1 - config.val_fraction));
    out.train = std::make_unique<trainers::TokenFileStreams>(file, 0, split, config.batch);
    held_out = n - split;
    if (held_out > validation_streams * 2)
      out.validation = std::make_unique<trainers::TokenFileStreams>(file, split, n, validation_streams);
  } else {
    const std::string text = read_file(config.data);
    if (config.vocabulary.symbols.empty()) {
      std::vector<std::string> files = {config.data}, texts = {text};
      for (const std::string& f : {config.val_data, config.test_data})
        if (!f.empty()) files.push_back(f), texts.push_back(read_file(f));
      config.vocabulary = vocabulary_of(config.vocabulary.mode, config.vocab_size, files, texts);
    }
    const std::vector<std::int32_t> ids = config.vocabulary.encode(text, config.data);
    const auto split =
        held_out_file ? ids.size()
                      : static_cast<std::size_t>(static_cast<double>(ids.size()) * (1 - config.val_fraction));
    out.train = streams_of({ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(split)},
                           config.token_count(), config.batch, config.data);
    const std::vector<std::int32_t> rest(ids.begin() + static_cast<std::ptrdiff_t>(split), ids.end());
    held_out = static_cast<std::int64_t>(rest.size());
    if (held_out > validation_streams * 2)
      out.validation = streams_of(rest, config.token_count(), validation_streams, config.data);
  }
  std::int64_t unknown = 0;
  if (held_out_file) {
    out.validation = token_streams(config, config.val_data, validation_streams, {.as_unknown = &unknown});
    out.notes.push_back(unknown_note("validation file", config.val_data, unknown));
  } else if (!out.validation && held_out > 0)
    out.no_validation_reason = "no validation: " + std::to_string(held_out) +
                               " held-out tokens are too few for " + std::to_string(validation_streams) +
                               " streams of at least 2";
  if (!config.test_data.empty()) {
    out.test = token_streams(config, config.test_data, validation_streams, {.as_unknown = &unknown});
    out.notes.push_back(unknown_note("test file", config.test_data, unknown));
  }
  std::erase(out.notes, std::string());
  return out;
}

trainers::Vocabulary vocabulary_of(trainers::TokenMode mode, std::int64_t vocab_size,
                                   const std::vector<std::string>& files,
                                   const std::vector<std::string>& texts) {
  if (texts.empty()) throw std::invalid_argument("a vocabulary needs a training text");
  trainers::Vocabulary v = trainers::Vocabulary::of(mode, {texts[0]}, {files.at(0)}, vocab_size);
  for (std::size_t i = 1; i < texts.size(); ++i) v.cover(texts[i], files.at(i), vocab_size);
  return v;
}

trainers::Vocabulary read_vocabulary(const std::string& path) {
  try {
    trainers::Vocabulary v = get_vocabulary(json::parse(read_file(path)));
    std::vector<std::string> sorted = v.symbols;
    std::sort(sorted.begin(), sorted.end());
    if (sorted.empty()) throw std::runtime_error("it holds no symbols");
    if (const auto twice = std::adjacent_find(sorted.begin(), sorted.end()); twice != sorted.end())
      throw std::runtime_error("symbol '" + *twice + "' appears twice");
    return v;
  } catch (const std::exception& e) {
    throw std::runtime_error("vocabulary file '" + path + "': " + e.what());
  }
}

std::string vocabulary_json(const trainers::Vocabulary& vocabulary) {
  json j;
  put_vocabulary(j, vocabulary);
  return j.dump(1) + "\n";
}

bool is_csv(const std::string& path) {
  std::string extension = std::filesystem::path(path).extension().string();
  for (char& ch : extension) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return extension == ".csv";
}

bool RunConfig::series() const {
  return task.empty() && (format == "csv" || (format.empty() && is_csv(data)));
}

trainers::SeriesFrame read_series(const RunConfig& config, const std::string& path) {
  if (config.delimiter.size() != 1)
    throw std::invalid_argument("--delimiter must be one character, got '" + config.delimiter + "'");
  if (path == "-")
    return trainers::series_frame(trainers::CsvTable::parse(std::cin, "standard input", config.delimiter[0]),
                                  config.csv);
  return trainers::series_frame(trainers::CsvTable::read(path, config.delimiter[0]), config.csv);
}

namespace {
std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ",") + n;
  return out;
}

// "series: 2284 rows; inputs co2, targets co2 (the next row's), keys date; missing values interpolated;
// normalize standard (fitted on the first 1827 rows), differenced; validation: the last 457 rows, ...".
std::string describe_series(const RunConfig& config, const trainers::SeriesFrame& frame, std::size_t split,
                            const HeldOutSeries* validation) {
  std::string text = "series: " + std::to_string(frame.rows()) + " rows; inputs " +
                     joined(frame.input_names) + ", targets " + joined(frame.target_names) +
                     (frame.next_step ? " (the next row's)" : " (the same row's)");
  if (!frame.key_names.empty()) text += ", keys " + joined(frame.key_names);
  text += std::string("; missing values: ") + trainers::name_of(config.csv.missing);
  text += "; normalize " + config.transform.normalize + " (fitted on the first " + std::to_string(split) +
          " rows)" + (config.transform.difference ? ", differenced" : "");
  if (validation && config.val_data.empty())
    text += "; validation: the last " + std::to_string(frame.rows() - split) +
            " rows, one stream warmed up by the rows before";
  else if (validation)
    text += "; validation: '" + config.val_data + "', one stream" +
            (config.warmup_rows > 0 ? ", its first " + std::to_string(config.warmup_rows) + " rows not scored"
                                    : "");
  return text;
}
}  // namespace

SeriesSplit load_csv(RunConfig& config) {
  if (!(config.val_fraction >= 0 && config.val_fraction < 1))
    throw std::invalid_argument("--val-fraction must be in [0, 1)");
  if (config.warmup_rows < 0) throw std::invalid_argument("--warmup-rows must be >= 0");
  const trainers::SeriesFrame frame = read_series(config, config.data);
  // The columns as resolved against the header ("every other column"), so that the model file says.
  config.csv.inputs = frame.input_names;
  (frame.next_step ? config.csv.targets : config.csv.target_columns) = frame.target_names;
  const bool held_out_file = !config.val_data.empty();
  const std::size_t rows = frame.rows();
  const auto split =
      held_out_file ? rows : static_cast<std::size_t>(static_cast<double>(rows) * (1 - config.val_fraction));
  if (config.transform.columns.empty()) config.transform.fit(frame, split);
  const trainers::SeriesFrame z = config.transform.apply(frame);
  SeriesSplit out;
  try {
    out.train = trainers::series_streams(z, 0, split, config.batch);
  } catch (const std::invalid_argument& e) {
    if (split == rows) throw;
    throw std::invalid_argument("'" + config.data + "' has " + std::to_string(rows) + " rows, " +
                                std::to_string(rows - split) + " of them held out for validation (" +
                                "--val-fraction " + shortest(config.val_fraction) + "): " + e.what());
  }
  const auto held_out = [&](const std::string& path) {
    auto h = std::make_unique<HeldOutSeries>(
        HeldOutSeries{read_series(config, path), static_cast<std::size_t>(config.warmup_rows)});
    if (h->frame.input_names != frame.input_names || h->frame.target_names != frame.target_names)
      throw std::invalid_argument("'" + path + "' does not have the training file's columns");
    return h;
  };
  if (held_out_file) {
    out.validation = held_out(config.val_data);
  } else if (rows - split >= 2) {  // one stream through the whole file, scored after the split
    out.validation = std::make_unique<HeldOutSeries>(HeldOutSeries{frame, split});
  } else if (rows > split) {
    out.no_validation_reason = "no validation: 1 held-out row is too few to score a prediction";
  }
  if (!config.test_data.empty()) out.test = held_out(config.test_data);
  out.description = describe_series(config, frame, split, out.validation.get());
  return out;
}

void find_model_plugin(plugins::Registry& registry, const RunConfig& config) {
  for (const plugins::LoadedPlugin* p : registry.plugins())
    if (p->descriptor->kind == plugins::Kind::model && p->descriptor->name == config.model) return;
  const std::string advice = "; give --plugin FILE, the plugin that defines model '" + config.model +
                             "' (rewind plugins lists what is found)";
  if (config.model_plugin_file.empty()) {
    try {
      (void)registry.find(plugins::Kind::model, config.model);
    } catch (const plugins::PluginError& e) {
      throw plugins::PluginError(e.what() + advice);
    }
  }
  std::error_code ec;
  if (!std::filesystem::exists(config.model_plugin_file, ec))
    throw plugins::PluginError("the run's model plugin '" + config.model + "' was loaded from '" +
                               config.model_plugin_file + "', which is gone" + advice);
  if (digest_of(config.model_plugin_file).xxh64 != config.model_plugin_xxh64)
    std::fprintf(stderr, "note: the plugin file '%s' changed since the run was saved\n",
                 config.model_plugin_file.c_str());
  registry.load_file(config.model_plugin_file);
}

std::unique_ptr<models::Model> build_model(plugins::Registry& registry, const RunConfig& config,
                                           const trainers::Dataset& shape) {
  find_model_plugin(registry, config);
  return registry.make_model(config.model, config.model_config(shape), config.model_options);
}

}  // namespace rwd::runtime
