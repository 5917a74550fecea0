#include "rewind/runtime/training.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "rewind/models/safetensors.hpp"
#include "rewind/runtime/world.hpp"
#include "rewind/trainers/checkpoint.hpp"

namespace fs = std::filesystem;

namespace rwd::runtime {
namespace {

// Seeds of the synthetic samples: one stream per training pass and one for validation, never equal.
constexpr std::uint64_t validation_stream = ~std::uint64_t{0};
std::uint64_t task_seed(std::uint64_t seed, std::uint64_t stream) {
  std::uint64_t z =
      seed * 0x9e3779b97f4a7c15ULL + stream;  // splitmix64's finaliser: distinct in, distinct out
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The data of one pass: the same text streams every pass, or a new sample of the synthetic task.
class PassData {
 public:
  explicit PassData(RunConfig& config) : config_(config) {
    if (!config_.task.empty()) return;
    if (config_.series()) {
      series_ = load_csv(config_);
    } else {
      text_ = load_text(config_);
    }
    const std::string& reason = series_.train ? series_.no_validation_reason : text_.no_validation_reason;
    if (!series_.description.empty()) notes_.push_back(series_.description);
    if (!reason.empty()) notes_.push_back(reason);
    notes_.insert(notes_.end(), text_.notes.begin(), text_.notes.end());
  }
  const std::vector<std::string>& notes() const { return notes_; }
  // This rank's streams of the pass (all of them in one process): the same global layout whatever the
  // number of ranks.
  const trainers::Dataset& train(std::int64_t pass) {
    const trainers::Dataset& whole = whole_train(pass);
    if (!World::distributed()) return whole;
    const auto [begin, end] = World::share(whole.batch(), "--batch");
    return share_of(whole, begin, end, train_share_);
  }
  // Validation and test streams are shared as evenly as they go (10 among 4 ranks: 2, 3, 2, 3);
  // World::combine adds the ranks' sums.
  const trainers::Dataset* validation() {
    return held_out_share(whole_validation(), "validation", validation_share_);
  }
  const trainers::Dataset* test() { return held_out_share(text_.test.get(), "test", test_share_); }
  // A series is held out as one stream per file, evaluated whole by every rank (nothing to share).
  const HeldOutSeries* series_validation() const { return series_.validation.get(); }
  const HeldOutSeries* series_test() const { return series_.test.get(); }

 private:
  const trainers::Dataset& whole_train(std::int64_t pass) {
    if (series_.train) return *series_.train;
    if (config_.task.empty()) return *text_.train;
    if (pass != task_pass_) {
      train_share_ = {};  // its slice refers to (and copied rows of) the sample being replaced
      task_ = trainers::synthetic_task(config_.task, config_.batch, config_.task_steps,
                                       task_seed(config_.seed, static_cast<std::uint64_t>(pass)));
      task_pass_ = pass;
    }
    return *task_;
  }
  const trainers::Dataset* whole_validation() {
    if (!config_.task.empty() && !held_out_)  // a sample no training pass sees
      held_out_ = trainers::synthetic_task(config_.task, config_.batch, config_.task_steps,
                                           task_seed(config_.seed, validation_stream));
    if (series_.train) return nullptr;
    return config_.task.empty() ? text_.validation.get() : held_out_.get();
  }
  struct Share {
    const trainers::Dataset* whole = nullptr;
    std::unique_ptr<trainers::StreamSlice> slice;
  };
  static const trainers::Dataset* held_out_share(const trainers::Dataset* whole, const char* what,
                                                 Share& share) {
    if (!whole || !World::distributed()) return whole;
    const std::int64_t n = whole->batch(), r = World::rank(), ranks = World::size();
    if (n < ranks)
      throw std::invalid_argument(std::to_string(n) + " " + what + " streams cannot be shared by " +
                                  std::to_string(ranks) + " ranks");
    return &share_of(*whole, r * n / ranks, (r + 1) * n / ranks, share);
  }
  static const trainers::Dataset& share_of(const trainers::Dataset& whole, std::int64_t begin,
                                           std::int64_t end, Share& share) {
    if (share.whole != &whole) share = {&whole, std::make_unique<trainers::StreamSlice>(whole, begin, end)};
    return *share.slice;
  }

  RunConfig& config_;
  TextData text_;
  SeriesSplit series_;
  std::unique_ptr<trainers::Dataset> task_, held_out_;
  std::int64_t task_pass_ = -1;
  Share train_share_, validation_share_, test_share_;
  std::vector<std::string> notes_;
};

// The best periodic validation loss so far, for --keep-best and --early-stop. It is part of the checkpoint,
// so that a resumed run compares with the same best as an uninterrupted one.
struct BestValidation {
  double loss = INFINITY;
  std::int64_t update = 0, evaluations_since = 0;

  // Whether `l` is a new best.
  bool observe(double l, std::int64_t at) {
    if (l < loss) {
      loss = l, update = at, evaluations_since = 0;
      return true;
    }
    ++evaluations_since;
    return false;
  }
  std::map<std::string, std::string> metadata() const {
    char best[40];
    std::snprintf(best, sizeof best, "%.17g", loss);  // round-trips exactly
    return {{"rewind.best_validation_loss", best},
            {"rewind.best_update", std::to_string(update)},
            {"rewind.evaluations_since_best", std::to_string(evaluations_since)}};
  }
  // Checkpoints saved before it was recorded start afresh.
  static BestValidation from(const std::map<std::string, std::string>& meta, const std::string& file) {
    BestValidation b;
    if (!meta.count("rewind.best_validation_loss")) return b;
    try {
      b.loss = std::stod(meta.at("rewind.best_validation_loss"));
      b.update = std::stoll(meta.at("rewind.best_update"));
      b.evaluations_since = std::stoll(meta.at("rewind.evaluations_since_best"));
    } catch (const std::exception&) {
      throw std::runtime_error("checkpoint '" + file + "': the best validation loss's metadata is malformed");
    }
    return b;
  }
};

// checkpoint.safetensors is the latest; the K - 1 before it stay as checkpoint-UPDATE.safetensors, hard links
// to files that are only ever replaced by rename, never written in place. Only the numbered files this run
// wrote into this directory are removed: their updates are part of the checkpoint, so a resumed run knows
// them too, and a user's file that happens to look alike is never touched.
struct NumberedCheckpoints {
  fs::path dir;
  std::vector<std::int64_t> updates;  // oldest first

  static fs::path file(const fs::path& dir, std::int64_t update) {
    return dir / ("checkpoint-" + std::to_string(update) + ".safetensors");
  }
  // A file of that name that this run did not write: it stays, and that update gets no numbered copy.
  bool foreign(std::int64_t update) const {
    return std::ranges::find(updates, update) == updates.end() &&
           fs::exists(fs::symlink_status(file(dir, update)));
  }
  // The updates kept once `update` is saved with `keep` checkpoints.
  std::vector<std::int64_t> after_saving(std::int64_t update, std::int64_t keep) const {
    std::vector<std::int64_t> kept = updates;
    if (!foreign(update) && (kept.empty() || kept.back() != update)) kept.push_back(update);
    if (static_cast<std::int64_t>(kept.size()) > keep) kept.erase(kept.begin(), kept.end() - keep);
    return kept;
  }
  // After checkpoint.safetensors of `update` is written: its numbered link, and the oldest ones removed.
  void saved(std::int64_t update, std::int64_t keep, const std::function<void(const std::string&)>& warn) {
    const std::vector<std::int64_t> kept = after_saving(update, keep);
    std::error_code ec;
    const fs::path numbered = file(dir, update);
    if (foreign(update)) {
      if (warn)
        warn("warning: '" + numbered.string() +
             "' exists and was not written by this run: it is left as it is");
    } else {
      fs::remove(numbered, ec);
      fs::create_hard_link(dir / "checkpoint.safetensors", numbered, ec);
      if (ec) throw std::runtime_error("cannot keep checkpoint '" + numbered.string() + "': " + ec.message());
    }
    for (std::int64_t old : updates)
      if (std::ranges::find(kept, old) == kept.end()) fs::remove(file(dir, old), ec);
    updates = kept;
  }
  std::string metadata(std::int64_t update, std::int64_t keep) const {
    return nlohmann::json{{"dir", dir.string()}, {"updates", after_saving(update, keep)}}.dump();
  }
  // The list a checkpoint stored, when it was stored for this directory (a run saved elsewhere starts
  // afresh).
  static NumberedCheckpoints from(const std::map<std::string, std::string>& meta, const fs::path& dir) {
    NumberedCheckpoints n{dir, {}};
    const auto stored = meta.find("rewind.numbered_checkpoints");
    if (stored == meta.end()) return n;
    const nlohmann::json j = nlohmann::json::parse(stored->second, nullptr, false);
    if (j.is_object() && j.value("dir", std::string()) == dir.string() && j.contains("updates") &&
        j["updates"].is_array())
      for (const auto& u : j["updates"])
        if (u.is_number_integer()) n.updates.push_back(u.get<std::int64_t>());
    return n;
  }
};

// Fails now rather than after training: a probe file is created and removed in dir.
void check_writable_directory(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error("--save: cannot create directory '" + dir.string() + "': " + ec.message());
  std::string probe = (dir / ".rewind-write-test.XXXXXX").string();
  const int fd = ::mkstemp(probe.data());
  if (fd < 0)
    throw std::runtime_error("--save: cannot write into '" + dir.string() + "': " + std::strerror(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

}  // namespace

// ---- a saved run ---------------------------------------------------------------------------------------

SavedRun SavedRun::read(const std::string& dir) {
  SavedRun run;
  run.checkpoint = fs::path(dir) / "checkpoint.safetensors";
  run.metadata = trainers::read_checkpoint_metadata(run.checkpoint);
  if (!run.metadata.count("rewind.run"))
    throw std::runtime_error("'" + run.checkpoint.string() +
                             "' holds no run configuration (rewind.run); was it saved by rewind train?");
  run.config = RunConfig::from_json(run.metadata.at("rewind.run"));
  run.outputs = RunOutputs::from_metadata(run.metadata);
  return run;
}

std::string SavedRun::best_copy_of() const {
  const auto it = metadata.find("rewind.best_copy_of");
  return it == metadata.end() ? std::string() : it->second;
}

// ---- metrics -------------------------------------------------------------------------------------------

MetricsLog::MetricsLog(const std::string& path, std::int64_t log_every, std::int64_t batch)
    : log_every_(log_every), batch_(batch) {
  if (path.empty()) return;
  out_ = std::make_unique<std::ofstream>(path, std::ios::app);
  if (!*out_) throw std::runtime_error("cannot open metrics file '" + path + "'");
}

bool MetricsLog::update(const trainers::UpdateReport& r) {
  step_items_ += static_cast<double>(r.steps_recorded * batch_);
  interval_loss_ += r.stats.loss, ++interval_updates_, interval_skipped_ += r.skipped_nonfinite;
  last_ = r;
  const bool due =
      log_every_ > 0 ? r.update % log_every_ == 0 : r.update % 10 == 0 && r.seconds - last_logged_ >= 1.0;
  if (due) {
    last_logged_ = r.seconds;
    write_updates();
  }
  return due;
}

void MetricsLog::write_updates() {
  if (!out_ || interval_updates_ == 0) return;
  const trainers::UpdateReport& r = last_;
  nlohmann::json line{{"update", r.update},
                      {"pass", r.pass},
                      {"loss", interval_loss_ / static_cast<double>(interval_updates_)},
                      {"updates", interval_updates_},
                      {"grad_norm", r.grad_norm},
                      {"lr", r.lr},
                      {"seconds", r.seconds},
                      {"steps_x_batch_per_second", rate()},
                      {"skipped_nonfinite", interval_skipped_},
                      {"tape_peak_bytes", r.stats.tape.peak_bytes},
                      {"tape_reserved_bytes", r.stats.tape.reserved_bytes},
                      {"arena_block_allocations", r.stats.tape.block_allocations}};
  if (r.stats.k2 > 0) line["k1"] = r.stats.k1, line["k2"] = r.stats.k2;  // the window in use
  *out_ << line.dump() << std::endl;
  interval_loss_ = 0, interval_updates_ = interval_skipped_ = 0;
}

double MetricsLog::rate() const {
  return step_items_ / std::max(last_.seconds, 1e-9);
}

void MetricsLog::evaluation(const std::string& metric, const Score& score, std::int64_t update) {
  const trainers::Evaluation& e = score.model;
  if (!out_ || e.count == 0) return;
  nlohmann::json line{{"update", update}, {metric + "_loss", e.loss}, {metric + "_count", e.count}};
  if (score.columns.empty()) {
    line[metric + "_accuracy"] = static_cast<double>(e.correct) / static_cast<double>(e.count);
  } else {  // regression: errors per target column in the data's units, persistence's beside them
    for (const auto& [key, errors] :
         {std::pair{"_columns", &score.columns}, {"_persistence", &score.persistence}})
      for (const ColumnErrors& c : *errors)
        line[metric + key][c.column] = {{"mse", c.mse}, {"rmse", c.rmse}, {"mae", c.mae}, {"count", c.count}};
  }
  *out_ << line.dump() << std::endl;
}

void MetricsLog::finish() {
  write_updates();
  if (out_) out_->flush();
}

// ---- training ------------------------------------------------------------------------------------------

struct Training::State {
  explicit State(RunConfig& config) : data(config) {}
  PassData data;
  BestValidation best;
  NumberedCheckpoints numbered;
  std::unique_ptr<MetricsLog> metrics;
  std::function<void(const std::string&)> warn;
};

Training::Training(RunConfig config, plugins::Registry& registry, RunFiles files, Limits limits,
                   const SavedRun* resumed)
    : config_(std::move(config)), files_(std::move(files)), limits_(limits), optimizer_(config_.optimizer) {
  const RunOutputs& out = config_.outputs;
  if (World::distributed() &&
      config_.trainer == "adaptive")  // its horizon would differ between ranks' shares
    throw std::invalid_argument("--trainer adaptive is not available under MPI yet");
  if (resumed == nullptr) config_.record_model_plugin(registry);
  s_ = std::make_unique<State>(config_);
  // After the data are read (bad data leave nothing behind), before training (not after it).
  if (!files_.save.empty() && World::rank() == 0) check_writable_directory(files_.save);
  if (out.keep_best && World::rank() == 0) check_writable_directory(fs::path(files_.save) / "best");
  for (const auto& [wanted, what] : {std::pair{out.keep_best, "--keep-best"},
                                     {out.early_stop > 0, "--early-stop"},
                                     {config_.optimizer.schedule == "plateau", "--lr-schedule plateau"}})
    if (wanted && (!has_validation() || config_.eval_every == 0))
      throw std::invalid_argument(std::string(what) +
                                  " needs validation runs: held-out data and --eval-every > 0");
  model_ = build_model(registry, config_, s_->data.train(0));
  trainer_ = registry.make_trainer(config_.trainer, config_.trainer_options);
  // Serialised now, with the vocabulary known and before training: a config that cannot be stored fails at
  // once.
  run_json_ = config_.to_json();
  trainers::LoopOptions loop_options{.clip = config_.clip,
                                     .accumulate = config_.accumulate,
                                     .max_updates = limits_.max_updates,
                                     .max_passes = limits_.epochs,
                                     .time_limit_seconds = limits_.time_limit,
                                     .max_nonfinite_skips = out.on_nonfinite == "skip" ? out.max_skips : 0};
  if (World::distributed()) loop_options.reduce = &World::reduce, loop_options.agree = &World::any;
  loop_ = std::make_unique<trainers::Loop>(
      *model_, *trainer_, optimizer_,
      [this](std::int64_t pass) -> const trainers::Dataset& { return s_->data.train(pass); }, loop_options);
  const std::map<std::string, std::string> no_metadata;
  const std::map<std::string, std::string>& meta = resumed ? resumed->metadata : no_metadata;
  if (resumed) {
    s_->best = BestValidation::from(meta, resumed->checkpoint.string());
    const std::int64_t pass = std::stoll(meta.at("rewind.pass"));
    trainer_->begin(*model_, s_->data.train(pass), loop_->tape());
    loop_->resume(trainers::restore_checkpoint(
        resumed->checkpoint, *model_, optimizer_, *trainer_,
        World::distributed() ? World::share(config_.batch, "--batch").first : 0, config_.batch));
  } else if (!files_.init.empty()) {
    models::load_parameters(files_.init, *model_);
  }
  s_->numbered = NumberedCheckpoints::from(
      meta, files_.save.empty() ? fs::path() : fs::absolute(files_.save).lexically_normal());
  s_->metrics = std::make_unique<MetricsLog>(World::rank() == 0 ? out.metrics : std::string(), out.log_every,
                                             config_.batch);
}

Training::~Training() = default;

bool Training::tokens() const {
  return s_->data.train(loop_->position().pass).vocab_size() > 0;
}
const trainers::Dataset* Training::validation() {
  return s_->data.validation();
}
const trainers::Dataset* Training::test() {
  return s_->data.test();
}
const std::vector<std::string>& Training::notes() const {
  return s_->data.notes();
}
double Training::best_loss() const {
  return s_->best.loss;
}
std::int64_t Training::best_update() const {
  return s_->best.update;
}
std::int64_t Training::evaluations_since_best() const {
  return s_->best.evaluations_since;
}
MetricsLog& Training::metrics() {
  return *s_->metrics;
}

// Atomic writes (temporary, fsync, rename, fsync of the directory): dir holds a complete checkpoint at every
// moment, so a kill -9 loses at most the updates since the last save.
void Training::save(const fs::path& dir) {
  const RunOutputs& out = config_.outputs;
  std::map<std::string, std::string> metadata = s_->best.metadata();
  metadata["rewind.run"] = run_json_;
  std::map<std::string, std::string> checkpoint_metadata = metadata;
  checkpoint_metadata[RunOutputs::metadata_key] = out.to_json();
  if (dir != files_.save) checkpoint_metadata["rewind.best_copy_of"] = s_->numbered.dir.string();
  if (out.keep_checkpoints > 1)
    checkpoint_metadata["rewind.numbered_checkpoints"] =
        s_->numbered.metadata(optimizer_.updates(), out.keep_checkpoints);
  // The parameters and optimizer are the same on every rank; the carried state of each rank's streams is
  // gathered (every rank takes part) and rank 0 writes the run as one process would have.
  const std::vector<autodiff::Tensor> all_streams = World::gather_rows(trainer_->stored_state());
  if (World::rank() != 0) return;
  trainers::save_checkpoint(dir / "checkpoint.safetensors", *model_, optimizer_, *trainer_, loop_->position(),
                            checkpoint_metadata, World::distributed() ? &all_streams : nullptr);
  models::save_parameters(dir / "model.safetensors", *model_, metadata);
  if (dir == files_.save && out.keep_checkpoints > 1)
    s_->numbered.saved(optimizer_.updates(), out.keep_checkpoints, s_->warn);
}

Score Training::score(const trainers::Dataset* tokens, const HeldOutSeries* series) {
  if (series) return evaluate_series(*model_, *series, config_.transform);
  return {World::combine(trainers::evaluate(*model_, *tokens)), {}, {}};
}

bool Training::has_validation() {
  return s_->data.validation() || s_->data.series_validation();
}

// Evaluated before the periodic save, so that a checkpoint holds what this evaluation changed (the plateau
// schedule, the best loss) and a resumed run does not evaluate it again.
void Training::validate(std::int64_t update, const TrainingEvents& events) {
  const Score score = this->score(s_->data.validation(), s_->data.series_validation());
  const trainers::Evaluation& e = score.model;
  if (events.evaluation) events.evaluation("validation", score);
  s_->metrics->evaluation("eval", score, update);
  if (e.count == 0) return;
  if (optimizer_.observe_validation(e.loss) && events.note) {
    char text[160];
    std::snprintf(text, sizeof text,
                  "plateau: learning rate reduced to %.3g (no improvement in more than %lld validation runs)",
                  optimizer_.current_lr(), static_cast<long long>(config_.optimizer.patience));
    events.note(text);
  }
  if (s_->best.observe(e.loss, update) && config_.outputs.keep_best) save(fs::path(files_.save) / "best");
  stopped_early_ = config_.outputs.early_stop > 0 && s_->best.evaluations_since >= config_.outputs.early_stop;
}

void Training::train(const TrainingEvents& events) {
  const autodiff::FlushDenormalsGuard denormals(config_.flush_denormals);
  const autodiff::MatmulPrecisionGuard products(config_.matmul_precision());
  const RunOutputs& out = config_.outputs;
  s_->warn = events.warning;
  try {
    loop_->run([&](const trainers::UpdateReport& r) {
      const bool logged = s_->metrics->update(r);
      if (events.update) events.update(r, logged);
      if (config_.eval_every > 0 && r.update % config_.eval_every == 0 && has_validation())
        validate(r.update, events);
      if (!files_.save.empty() &&
          ((out.save_every > 0 && r.update % out.save_every == 0) ||
           (out.save_every_seconds > 0 && World::any(r.seconds - last_save_ >= out.save_every_seconds)))) {
        save(files_.save);
        last_save_ = r.seconds;
      }
      return !(events.stop && events.stop()) && !stopped_early_;
    });
  } catch (const trainers::NonFiniteError& e) {
    s_->metrics->finish();
    // The check runs before the optimizer step: the parameters are still those of the last update, and
    // worth keeping when they are finite (a loss overflowed, not the weights).
    if (files_.save.empty() || !trainers::first_nonfinite_value(model_->parameters()).empty() ||
        World::rank() != 0)
      throw;
    const std::string last = std::to_string(optimizer_.updates());
    const fs::path file = fs::path(files_.save) / "model.safetensors";
    models::save_parameters(file, *model_,
                            {{"rewind.run", run_json_},
                             {"rewind.note", "parameters after update " + last +
                                                 ", the last finite one: training stopped on a non-finite "
                                                 "value in the next update"}});
    throw trainers::NonFiniteError(std::string(e.what()) + "; the parameters after update " + last +
                                   " (the last finite one) are saved in " + file.string());
  }
  s_->metrics->finish();
}

void Training::finish(const TrainingEvents& events, bool interrupted) {
  const autodiff::FlushDenormalsGuard denormals(config_.flush_denormals);
  const autodiff::MatmulPrecisionGuard products(config_.matmul_precision());
  if (!interrupted) {  // when interrupted, save first: a grace period may be short
    for (const auto& [label, metric, data, series] :
         {std::tuple{"validation (final)", "eval", validation(), s_->data.series_validation()},
          std::tuple{"test", "test", test(), s_->data.series_test()}}) {
      if (!data && !series) continue;
      const Score score = this->score(data, series);
      if (events.evaluation) events.evaluation(label, score);
      s_->metrics->evaluation(metric, score, optimizer_.updates());
    }
  }
  if (!files_.save.empty()) save(files_.save);
  s_->metrics->flush();
}

}  // namespace rwd::runtime
