// A training run as rewind train runs it, for the CLI and a user's own program alike: the data of every pass
// (shared among MPI ranks), the model, trainer, optimizer and loop, periodic validation with the plateau
// schedule, --keep-best and --early-stop, atomic saves with numbered checkpoints, exact resume, and the last
// finite parameters kept on a non-finite stop. It prints nothing: what happens reaches the caller as events.
// docs/trainers.md has the semantics.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "rewind/runtime/export.hpp"
#include "rewind/runtime/run_config.hpp"
#include "rewind/trainers/evaluate.hpp"
#include "rewind/trainers/loop.hpp"

namespace rwd::runtime {

// When training stops: passes, updates counted from the start of training (also after a resume), seconds of
// this process. 0: no limit of that kind.
struct Limits {
  std::int64_t epochs = 0, max_updates = 0;
  double time_limit = 0;
};

// Where a run's files go and where it starts from.
struct RunFiles {
  std::string save;  // directory of model.safetensors and checkpoint.safetensors; empty: nothing is saved
  std::string init;  // a new run's initial weights (.safetensors, PyTorch names); empty: the seed's
};

// A saved run read back: its configuration, its output options and every metadata entry of the checkpoint.
struct REWIND_RUNTIME_EXPORT SavedRun {
  RunConfig config;
  RunOutputs outputs;
  std::map<std::string, std::string> metadata;
  std::filesystem::path checkpoint;  // DIR/checkpoint.safetensors
  // The run in DIR; refuses a directory without a rewind checkpoint, naming it.
  static SavedRun read(const std::string& dir);
  // "rewind.best_copy_of": the directory of the run whose best model this is (--keep-best), or empty.
  std::string best_copy_of() const;
};

// The metrics file (JSON lines, appended to): a line every log_every updates with the mean loss over them (0:
// every 10 updates and at most one line a second, about 1 MB per hour however fast the updates come), one
// for the updates left at the end, and one per evaluation. docs/trainers.md, "Seeing a run".
class REWIND_RUNTIME_EXPORT MetricsLog {
 public:
  // path empty: nothing is written, but the rate is kept. batch: streams, for the throughput.
  MetricsLog(const std::string& path, std::int64_t log_every, std::int64_t batch);
  // Whether this update is due a line (and so a progress line when not on a terminal).
  bool update(const trainers::UpdateReport& report);
  // metric: "eval" or "test"; time series add their errors per column (and persistence's), tokens accuracy.
  void evaluation(const std::string& metric, const Score& score, std::int64_t update);
  void finish();  // the updates since the last line
  void flush() {
    if (out_) out_->flush();
  }
  double rate() const;  // time steps x batch per second since training started

 private:
  void write_updates();
  std::unique_ptr<std::ofstream> out_;
  std::int64_t log_every_, batch_;
  trainers::UpdateReport last_;
  double step_items_ = 0, last_logged_ = -1e300, interval_loss_ = 0;
  std::int64_t interval_updates_ = 0, interval_skipped_ = 0;
};

// What a run reports as it trains. Every member may be left empty.
struct TrainingEvents {
  // After each update's optimizer step; logged: a metrics line was due (the rate of log lines).
  std::function<void(const trainers::UpdateReport&, bool logged)> update;
  // "validation", "validation (final)" or "test", and what it measured (count 0: nothing to measure).
  std::function<void(const std::string&, const Score&)> evaluation;
  std::function<void(const std::string&)> note;     // a learning-rate reduction
  std::function<void(const std::string&)> warning;  // a user's file left alone
  std::function<bool()> stop;                       // true: stop after this update (a signal)
};

class REWIND_RUNTIME_EXPORT Training {
 public:
  // A new run (config validated, data fingerprinted), or the saved run `resumed` (config: its config, with
  // the outputs the caller merged). The registry gains the run's recorded model plugin when it lacks it.
  Training(RunConfig config, plugins::Registry& registry, RunFiles files, Limits limits,
           const SavedRun* resumed = nullptr);
  ~Training();
  Training(const Training&) = delete;
  Training& operator=(const Training&) = delete;

  const RunConfig& config() const { return config_; }
  models::Model& model() { return *model_; }
  const trainers::Optimizer& optimizer() const { return optimizer_; }
  std::int64_t updates() const { return optimizer_.updates(); }
  std::int64_t pass() const { return loop_->position().pass; }
  bool tokens() const;  // token targets (classification), as opposed to real values
  // This rank's held-out token or task streams (null: none, or a time series, held out whole).
  const trainers::Dataset* validation();
  const trainers::Dataset* test();
  bool has_validation();
  // What the user should know about the data: held-out symbols read as <unk>, no validation and why.
  const std::vector<std::string>& notes() const;
  const std::string& save_dir() const { return files_.save; }
  const RunOutputs& outputs() const { return config_.outputs; }
  MetricsLog& metrics();

  // Trains until a limit, events.stop or an early stop. On a non-finite loss or gradient it saves the last
  // parameters when their values are finite (with a save directory) and throws trainers::NonFiniteError.
  void train(const TrainingEvents& events);
  // After train: the final validation and test (skipped when interrupted, so that a save comes first within
  // a signal's grace period) and the save.
  void finish(const TrainingEvents& events, bool interrupted);

  bool stopped_early() const { return stopped_early_; }
  // The best periodic validation loss, its update, and validation runs since.
  double best_loss() const;
  std::int64_t best_update() const;
  std::int64_t evaluations_since_best() const;

 private:
  struct State;
  void save(const std::filesystem::path& dir);
  Score score(const trainers::Dataset* tokens, const HeldOutSeries* series);
  void validate(std::int64_t update, const TrainingEvents& events);

  RunConfig config_;
  RunFiles files_;
  Limits limits_;
  std::unique_ptr<State> s_;
  std::unique_ptr<models::Model> model_;
  std::unique_ptr<trainers::Trainer> trainer_;
  trainers::Optimizer optimizer_;
  std::unique_ptr<trainers::Loop> loop_;
  std::string run_json_;
  bool stopped_early_ = false;
  double last_save_ = 0;
};

}  // namespace rwd::runtime
