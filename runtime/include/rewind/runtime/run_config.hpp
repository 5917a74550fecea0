// Everything that defines a training run, as rewind train reads it from its options and as checkpoints store
// it (JSON), so that --resume, sample, eval, predict and a user's own program rebuild exactly the same model
// and data.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "rewind/plugins/registry.hpp"
#include "rewind/runtime/export.hpp"
#include "rewind/runtime/series.hpp"
#include "rewind/trainers/csv.hpp"
#include "rewind/trainers/data.hpp"
#include "rewind/trainers/optim.hpp"
#include "rewind/trainers/tokens.hpp"

namespace rwd::runtime {

// Where and how often a run saves and reports. Stored in the checkpoint (not in model.safetensors, which
// stays the same whatever the outputs), so that `--resume DIR` goes on saving and logging as the run did:
// options not given again keep the stored values (a resume that dropped them trained and then threw the work
// away).
struct REWIND_RUNTIME_EXPORT RunOutputs {
  std::int64_t save_every = 0;
  double save_every_seconds = 0;
  std::int64_t keep_checkpoints = 1;
  bool keep_best = false;
  std::int64_t early_stop = 0;  // validation runs without a new best before stopping (0: never)
  std::string on_nonfinite = "stop";
  std::int64_t max_skips = 10;
  std::string metrics;         // absolute once the run starts; empty: none
  std::int64_t log_every = 0;  // updates per metrics (and non-terminal progress) line; 0: automatic

  static constexpr const char* metadata_key = "rewind.outputs";
  // Refuses values that cannot work, naming the option; saving: a save directory is given.
  void validate(bool saving) const;
  std::string to_json() const;
  static RunOutputs from_metadata(const std::map<std::string, std::string>& metadata);
};

struct REWIND_RUNTIME_EXPORT RunConfig {
  std::string model = "lstm";
  std::map<std::string, std::string> model_options;
  // The file of the model plugin that built the model (absolute) and its XXH64, so that a saved run rebuilds
  // without --plugin; empty for runs saved before it was recorded.
  std::string model_plugin_file, model_plugin_xxh64;
  std::string trainer = "truncated";
  std::map<std::string, std::string> trainer_options;
  std::string data;  // text file, a .csv time series, or a token file (an absolute path once trained)
  std::string val_data, test_data;  // held-out files instead of --val-fraction (absolute once trained)
  // What the data file held when the run started (size in bytes, XXH64 as hex), so that a resume notices a
  // changed file. Empty for tasks and for runs saved before they were recorded.
  std::int64_t data_bytes = -1;
  std::string data_xxh64;
  trainers::CsvOptions csv;
  std::string format;  // "csv", or empty: by the data file's extension
  std::string delimiter = ",";
  SeriesTransform transform;     // fitted on the training rows when the run starts
  std::int64_t warmup_rows = 0;  // rows of a held-out series file run but not scored
  std::string task;              // or a synthetic task: recall:L, adding:L, delay:D
  std::int64_t task_steps = 1000;
  double val_fraction = 0.1;
  std::int64_t batch = 32, hidden = 128, embedding = 0;
  int layers = 1;
  double init_range = 0;
  std::uint64_t seed = 1;
  trainers::OptimizerConfig optimizer;
  double clip = 0;
  std::int64_t accumulate = 1;  // windows per update (gradient accumulation)
  // Denormal floats read and written as zero while training (autodiff::FlushDenormalsGuard): part of the run,
  // since it can change the last bits of a result. Runs saved before it was recorded resume without.
  bool flush_denormals = true;
  // Products while training: "f32", or "bf16" (bf16 operands, f32 sums: autodiff::MatmulPrecision). Part of
  // the run; runs saved before it was recorded are f32.
  std::string precision = "f32";
  autodiff::MatmulPrecision matmul_precision() const {
    return precision == "bf16" ? autodiff::MatmulPrecision::bf16 : autodiff::MatmulPrecision::f32;
  }
  // Updates between validation runs (0: only at the end). Part of the run: the plateau schedule, the best
  // checkpoint and early stopping count validation runs, so a resume keeps it unless told otherwise.
  std::int64_t eval_every = 500;
  // Token runs: the tokenisation and its symbols in token order. Empty symbols for a token file trained
  // without --vocab (ids only: eval works, sample cannot print).
  trainers::Vocabulary vocabulary;
  std::int64_t vocab_size = 0;  // words: --vocab-size (0: every word); token files: ids are below it
  std::string token_dtype;      // token files: uint16 or uint32; empty for text
  RunOutputs outputs;           // not part of to_json: see RunOutputs

  bool token_file() const { return !token_dtype.empty(); }
  // A time series: CSV by --format csv or by the extension.
  bool series() const;
  std::int64_t token_count() const {  // the model's vocabulary
    return token_file() ? vocab_size : vocabulary.size();
  }

  // Refuses sizes and rates that cannot train (batch 0, a negative clip, ...), naming the option.
  void validate() const;
  // Records which file provides the model plugin (before the model is built from it).
  void record_model_plugin(const plugins::Registry& registry);
  // Makes data absolute and records its size and hash; check_data_unchanged compares them on resume.
  void fingerprint_data();
  void check_data_unchanged() const;

  std::string to_json() const;
  static RunConfig from_json(const std::string& json);
  models::ModelConfig model_config(const trainers::Dataset& shape) const;
};

// What happens to symbols outside a vocabulary without <unk>: an error naming them, or (skip) dropped; the
// counts of dropped symbols and of symbols read as <unk>, when wanted.
struct UnknownSymbols {
  bool skip = false;
  std::int64_t* skipped = nullptr;
  std::int64_t* as_unknown = nullptr;
};

// Validation streams of text and CSV data, whatever the training batch: evaluation results must not depend
// on --batch (PyTorch's word_language_model evaluates with 10 as well). rewind eval uses its own --batch.
constexpr std::int64_t validation_batch = 10;

// Text or a token file as training, validation and test streams; the vocabulary is the config's, or built
// from the training text (held-out symbols it lacks are read as <unk>: docs/data.md).
struct TextData {
  std::unique_ptr<trainers::Dataset> train, validation, test;
  std::string no_validation_reason;  // when validation is null although some text was held out
  std::vector<std::string> notes;    // what the user should know: held-out symbols read as <unk>
};
// The whole file; errors name it and say why.
REWIND_RUNTIME_EXPORT std::string read_file(const std::string& path);

// Validation (--val-data, or the last --val-fraction of the data) and test are cut into
// `validation_streams` streams; no_validation_reason says why there is none.
REWIND_RUNTIME_EXPORT TextData load_text(RunConfig& config,
                                         std::int64_t validation_streams = validation_batch);
// A whole file as `batch` token streams with the run's tokenisation (text or token file).
REWIND_RUNTIME_EXPORT std::unique_ptr<trainers::Dataset> token_streams(const RunConfig& config,
                                                                       const std::string& path,
                                                                       std::int64_t batch,
                                                                       const UnknownSymbols& unknown = {});
// "validation file 'v.txt': 3 symbol(s) the training text lacks, read as <unk>"; empty for none.
REWIND_RUNTIME_EXPORT std::string unknown_note(const std::string& what, const std::string& path,
                                               std::int64_t count);
// The vocabulary of a run's files (texts[0] the training text, then validation and test): the training text's
// symbols in every mode (vocab_size: the total, <unk> included), covering the held-out texts (a symbol the
// training text lacks is read as <unk>). PyTorch's word_language_model builds one dictionary from all splits
// instead (docs/data.md).
REWIND_RUNTIME_EXPORT trainers::Vocabulary vocabulary_of(trainers::TokenMode mode, std::int64_t vocab_size,
                                                         const std::vector<std::string>& files,
                                                         const std::vector<std::string>& texts);
// Reads a vocabulary file written by rewind tokenize (JSON: tokens, symbols); errors name the file.
REWIND_RUNTIME_EXPORT trainers::Vocabulary read_vocabulary(const std::string& path);
REWIND_RUNTIME_EXPORT std::string vocabulary_json(const trainers::Vocabulary& vocabulary);
// A .csv file, whatever the case of its extension.
REWIND_RUNTIME_EXPORT bool is_csv(const std::string& path);
// A CSV time series: the training streams (in the model's units) and the held-out series, each one stream
// with its state carried through (--val-data, or the rows after the --val-fraction split, warmed up by the
// training rows before them), scored in the data's units.
struct SeriesSplit {
  std::unique_ptr<trainers::SeriesData> train;
  std::unique_ptr<HeldOutSeries> validation, test;
  std::string description;  // what was read and how: columns, gaps, transforms, what is scored
  std::string no_validation_reason;
};
// The rows of a series file as the run reads them (its columns, missing values, delimiter); "-": standard
// input.
REWIND_RUNTIME_EXPORT trainers::SeriesFrame read_series(const RunConfig& config, const std::string& path);
// Fits config.transform on the training rows when it is not fitted yet (a new run).
REWIND_RUNTIME_EXPORT SeriesSplit load_csv(RunConfig& config);

// Builds the model a config describes and checks a sample of its data fits. A model plugin the registry lacks
// is loaded from the file the run recorded; when that file is gone the error says to give --plugin FILE.
REWIND_RUNTIME_EXPORT std::unique_ptr<models::Model> build_model(plugins::Registry& registry,
                                                                 const RunConfig& config,
                                                                 const trainers::Dataset& shape);
// Loads the run's recorded model plugin file into the registry when it lacks the model (see build_model).
REWIND_RUNTIME_EXPORT void find_model_plugin(plugins::Registry& registry, const RunConfig& config);

}  // namespace rwd::runtime
