// rewind train: the main job. Trains a model plugin with a trainer plugin on text or a synthetic task, shows
// progress, evaluates, checkpoints (Ctrl-C / SIGTERM save and exit), resumes exactly, and samples.
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <atomic>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "commands.hpp"
#include "parse.hpp"
#include "plot.hpp"
#include "plugin_options.hpp"
#include "rewind/models/safetensors.hpp"
#include "rewind/runtime/run_config.hpp"
#include "rewind/runtime/world.hpp"
#include "rewind/trainers/checkpoint.hpp"
#include "rewind/trainers/evaluate.hpp"
#include "rewind/trainers/loop.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace rwd::cli {
using namespace rwd::runtime;  // RunConfig and the data and models it rebuilds
namespace {

std::atomic<bool> interrupted{false};
// The first Ctrl-C or SIGTERM asks for a clean stop after the current update; a second one kills as usual.
extern "C" void on_signal(int signal) {
  interrupted = true;
  std::signal(signal, SIG_DFL);
}

std::string duration(double seconds) {
  const auto s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  return buf;
}

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
    if (is_csv(config_.data)) {
      series_ = load_csv(config_);
    } else {
      text_ = load_text(config_);
    }
    const std::string& reason = series_.train ? series_.no_validation_reason : text_.no_validation_reason;
    if (!reason.empty()) std::printf("%s\n", reason.c_str());
    for (const std::string& note : text_.notes) std::printf("%s\n", note.c_str());
  }
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
    if (series_.train) return series_.validation.get();
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
};

// How an evaluation of token data reads: perplexity for any tokens, bits per character for characters.
struct Scores {
  bool perplexity = false, bits = false;
};

void report_evaluation(const char* label, const trainers::Evaluation& e, Scores scores,
                       std::ofstream* metrics, std::int64_t update, const char* metric = "eval") {
  if (e.count == 0) return;
  std::printf("%s: loss %.4f", label, e.loss);
  if (scores.bits) std::printf(", %.3f bits per character", e.loss / std::log(2.0));
  if (scores.perplexity) std::printf(", perplexity %.2f", std::exp(e.loss));
  if (e.correct > 0 || scores.perplexity)
    std::printf(", accuracy %.3f", static_cast<double>(e.correct) / static_cast<double>(e.count));
  std::printf("\n");
  if (metrics)
    *metrics << nlohmann::json{{"update", update},
                               {std::string(metric) + "_loss", e.loss},
                               {std::string(metric) + "_count", e.count},
                               {std::string(metric) + "_accuracy",
                                static_cast<double>(e.correct) / static_cast<double>(e.count)}}
                    .dump()
             << std::endl;
}

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

// Progress lines (rewritten in place on a terminal, every --log-every updates otherwise) and metrics lines
// (every --log-every updates, with the mean loss over them). The automatic rate, every 10 updates and at most
// one line a second, keeps a metrics file near 1 MB per hour of training however fast the updates are.
class Progress {
 public:
  struct Settings {
    bool tty = false;
    bool tokens = false;  // accuracy is shown for token targets only
    std::int64_t batch = 1, log_every = 0, max_updates = 0;
    double time_limit = 0;
    std::int64_t start_updates = 0;
  };
  Progress(Settings settings, std::ofstream* metrics)
      : s_(settings), metrics_(metrics), started_(std::chrono::steady_clock::now()) {}

  void update(const trainers::UpdateReport& r) {
    skipped_ += r.skipped_nonfinite;
    smoothed_ = std::isnan(smoothed_) ? r.stats.loss : 0.95 * smoothed_ + 0.05 * r.stats.loss;
    step_items_ += static_cast<double>(r.steps_recorded * s_.batch);
    window_correct_ += r.stats.correct, window_count_ += r.stats.loss_count;
    interval_loss_ += r.stats.loss, ++interval_updates_, interval_skipped_ += r.skipped_nonfinite;
    last_ = r;
    const bool due = s_.log_every > 0 ? r.update % s_.log_every == 0
                                      : r.update % 10 == 0 && r.seconds - last_logged_ >= 1.0;
    if (due) {
      last_logged_ = r.seconds;
      write_metrics();
    }
    const std::int64_t done_here = r.update - s_.start_updates;
    if (s_.tty ? r.seconds - last_print_ >= 0.25 : due || done_here == 1) print(r, done_here);
  }
  // Ends a progress line rewritten in place, before other output.
  void end_line() {
    if (in_line_) std::printf("\n");
    in_line_ = false;
  }
  // The updates since the last metrics line, so that the file ends where training did.
  void finish() { write_metrics(); }
  void summary(std::int64_t updates) const {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    std::printf("trained %lld updates (to update %lld) in %.1f s, %.0f time steps x batch per second\n",
                static_cast<long long>(updates - s_.start_updates), static_cast<long long>(updates), seconds,
                step_items_ / std::max(seconds, 1e-9));
    if (skipped_ > 0) std::printf("skipped %lld non-finite update(s)\n", static_cast<long long>(skipped_));
  }

 private:
  void write_metrics() {
    if (!metrics_ || interval_updates_ == 0) return;
    const trainers::UpdateReport& r = last_;
    nlohmann::json line{{"update", r.update},
                        {"pass", r.pass},
                        {"loss", interval_loss_ / static_cast<double>(interval_updates_)},
                        {"updates", interval_updates_},
                        {"grad_norm", r.grad_norm},
                        {"lr", r.lr},
                        {"seconds", r.seconds},
                        {"steps_x_batch_per_second", step_items_ / std::max(r.seconds, 1e-9)},
                        {"skipped_nonfinite", interval_skipped_},
                        {"tape_peak_bytes", r.stats.tape.peak_bytes},
                        {"tape_reserved_bytes", r.stats.tape.reserved_bytes},
                        {"arena_block_allocations", r.stats.tape.block_allocations}};
    if (r.stats.k2 > 0) line["k1"] = r.stats.k1, line["k2"] = r.stats.k2;  // the window in use
    *metrics_ << line.dump() << std::endl;
    interval_loss_ = 0, interval_updates_ = interval_skipped_ = 0;
  }
  void print(const trainers::UpdateReport& r, std::int64_t done_here) {
    double eta = -1;
    if (s_.max_updates > 0)
      eta = r.seconds / static_cast<double>(done_here) * static_cast<double>(s_.max_updates - r.update);
    if (s_.time_limit > 0)
      eta = eta < 0 ? s_.time_limit - r.seconds : std::min(eta, s_.time_limit - r.seconds);
    last_print_ = r.seconds;
    char accuracy[32] = "";
    if (s_.tokens && window_count_ > 0)
      std::snprintf(accuracy, sizeof accuracy, "  acc %.3f",
                    static_cast<double>(window_correct_) / static_cast<double>(window_count_));
    char window[48] = "";
    if (r.stats.k2 > 0)
      std::snprintf(window, sizeof window, "  k %lld/%lld", static_cast<long long>(r.stats.k1),
                    static_cast<long long>(r.stats.k2));
    std::printf(
        "%supdate %6lld  pass %3lld  loss %.4f (smoothed %.4f)%s%s  lr %.3g  %7.0f steps x batch/s  tape "
        "%6.1f MiB  ETA %s%s",
        s_.tty ? "\r" : "", static_cast<long long>(r.update), static_cast<long long>(r.pass), r.stats.loss,
        smoothed_, accuracy, window, r.lr, step_items_ / std::max(r.seconds, 1e-9),
        static_cast<double>(r.stats.tape.peak_bytes) / (1 << 20), eta >= 0 ? duration(eta).c_str() : "?",
        s_.tty ? "   " : "\n");
    in_line_ = s_.tty;
    window_correct_ = window_count_ = 0;
    std::fflush(stdout);
  }

  Settings s_;
  std::ofstream* metrics_;
  std::chrono::steady_clock::time_point started_;
  trainers::UpdateReport last_;
  double smoothed_ = NAN, last_print_ = -1, last_logged_ = -INFINITY, step_items_ = 0, interval_loss_ = 0;
  std::int64_t window_correct_ = 0, window_count_ = 0, skipped_ = 0;
  std::int64_t interval_updates_ = 0, interval_skipped_ = 0;
  bool in_line_ = false;
};

// With --resume the stored run defines model, data and hyperparameters: only limits and outputs may be given.
void refuse_run_options_on_resume(const po::variables_map& vm) {
  // clang-format off
  static const std::set<std::string> allowed = {
      "resume", "epochs", "max-updates", "time-limit", "save", "save-every", "save-every-seconds",
      "keep-checkpoints", "keep-best", "early-stop", "metrics", "plot", "eval-every", "log-every", "sample-length", "prime", "temperature",
      "on-nonfinite", "max-skips", "no-save", "plugin", "plugin-dir", "help"};
  // clang-format on
  for (const auto& [name, value] : vm)
    if (!value.defaulted() && !allowed.count(name))
      throw std::invalid_argument("--" + name +
                                  " cannot be combined with --resume: the saved run fixes model, data and "
                                  "hyperparameters (with --resume give only limits and outputs: --epochs, "
                                  "--max-updates, --time-limit, --save, --save-every, --save-every-seconds, "
                                  "--keep-checkpoints, --keep-best, --early-stop, --metrics, --plot, "
                                  "--eval-every, --log-every, --on-nonfinite, --max-skips, --no-save, "
                                  "--sample-length, --prime, --temperature, --plugin, --plugin-dir)");
}

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
  void saved(std::int64_t update, std::int64_t keep) {
    const std::vector<std::int64_t> kept = after_saving(update, keep);
    std::error_code ec;
    const fs::path numbered = file(dir, update);
    if (foreign(update)) {
      std::fprintf(stderr, "warning: '%s' exists and was not written by this run: it is left as it is\n",
                   numbered.c_str());
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
    nlohmann::json j{{"dir", dir.string()}, {"updates", after_saving(update, keep)}};
    return j.dump();
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

bool given(const po::variables_map& vm, const char* option) {
  return vm.count(option) && !vm[option].defaulted();
}

// The run's stored output options, with those given again on the command line taking their place.
RunOutputs resumed_outputs(RunOutputs stored, const RunOutputs& typed, const po::variables_map& vm) {
  const auto take = [&](const char* option, auto member) {
    if (given(vm, option)) stored.*member = typed.*member;
  };
  take("save-every", &RunOutputs::save_every);
  take("save-every-seconds", &RunOutputs::save_every_seconds);
  take("keep-checkpoints", &RunOutputs::keep_checkpoints);
  take("keep-best", &RunOutputs::keep_best);
  take("early-stop", &RunOutputs::early_stop);
  take("on-nonfinite", &RunOutputs::on_nonfinite);
  take("max-skips", &RunOutputs::max_skips);
  take("log-every", &RunOutputs::log_every);
  if (given(vm, "metrics")) stored.metrics = fs::absolute(typed.metrics).lexically_normal().string();
  return stored;
}

// What a resumed run does with its work, in its first lines: where it saves and what it kept from the run.
std::string describe_outputs(const RunOutputs& out, const std::string& save, const po::variables_map& vm) {
  const auto origin = [&](const char* option) { return given(vm, option) ? "" : " (the run's)"; };
  if (save.empty()) return "saving nothing (--no-save)";
  std::string text = "saving into " + save + origin("save");
  if (out.save_every > 0)
    text += ", every " + std::to_string(out.save_every) + " updates" + origin("save-every");
  if (out.save_every_seconds > 0)
    text += ", every " + shortest(out.save_every_seconds) + " s" + origin("save-every-seconds");
  if (out.keep_checkpoints > 1)
    text += ", keeping " + std::to_string(out.keep_checkpoints) + " checkpoints" + origin("keep-checkpoints");
  if (out.keep_best) text += ", the best in " + (fs::path(save) / "best").string() + origin("keep-best");
  if (out.early_stop > 0)
    text += ", early stop after " + std::to_string(out.early_stop) + " evaluations" + origin("early-stop");
  if (!out.metrics.empty()) text += "; metrics appended to " + out.metrics + origin("metrics");
  if (!given(vm, "save")) text += "; --save DIR saves elsewhere, --no-save not at all";
  return text;
}

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

int run_train(int argc, const char* const* argv) {
  RunConfig config;
  PluginOptions plugin_options;
  std::vector<std::string> trainer_settings;
  std::int64_t epochs = 0, max_updates = 0, eval_every = config.eval_every, sample_length = 300;
  double time_limit = 0, temperature = 0.8;
  std::string save, resume, plot_path, init, prime = "ROMEO:";
  RunOutputs outputs;  // as given; a resumed run takes the stored ones for the rest
  bool tie_weights = false, no_save = false;
  std::int64_t k = 0, k1 = 0, k2 = 0, segment = 0, memory_budget = 0;
  std::string csv_inputs, csv_targets, csv_target_columns;
  std::string token_mode = "bytes", vocab_file;

  // Help lists the plugins installed now (found on the default search path only when help is asked for).
  const bool help = std::any_of(argv, argv + argc, [](const char* a) {
    return std::string_view(a) == "--help" || std::string_view(a) == "-h";
  });
  const auto found = [&](plugins::Kind kind) { return help ? plugin_names(kind) : std::string(); };
  po::options_description options("rewind train options");
  options.add_options()("help,h", "show this help")(
      "model", po::value(&config.model)->default_value(config.model),
      ("model plugin: " + found(plugins::Kind::model) + " (--plugin FILE adds your own)").c_str())(
      "trainer", po::value(&config.trainer)->default_value(config.trainer),
      ("trainer plugin: " + found(plugins::Kind::trainer) + " (rewind plugins lists their options)").c_str())(
      "k", po::value(&k), "truncated: window, k1 = k2 = K (not with --k1, --k2)")(
      "k1", po::value(&k1), "truncated: steps between updates")(
      "k2", po::value(&k2), "truncated: steps backpropagated per update (>= k1)")(
      "segment", po::value(&segment), "checkpointed: steps between kept states (default ceil(sqrt(T)))")(
      "memory-budget", po::value(&memory_budget), "checkpointed: tape bytes for one segment")(
      "trainer-option", po::value(&trainer_settings)->composing(),
      "KEY=VALUE for the trainer plugin (repeatable)")(
      "data", po::value(&config.data),
      "text file (tokens as --tokens), token file (with --token-dtype) or CSV time series (.csv) (default: "
      "the "
      "bundled tinyshakespeare)")("task", po::value(&config.task),
                                  "synthetic task instead: recall:L, adding:L, delay:D")(
      "tokens", po::value(&token_mode)->default_value(token_mode),
      "text: bytes (every byte a symbol), chars (UTF-8 code points) or words (whitespace, <eos> per line)")(
      "vocab-size", po::value(&config.vocab_size),
      "symbols in all, <unk> included: words: the N - 1 most frequent and <unk> for the rest; token files: "
      "ids "
      "are below N")("token-dtype", po::value(&config.token_dtype),
                     "--data is a token file of little-endian uint16 or uint32 ids (nanoGPT's train.bin)")(
      "vocab", po::value(&vocab_file), "vocabulary file written by rewind tokenize (token files: to print)")(
      "val-data", po::value(&config.val_data), "validation file instead of --val-fraction (same format)")(
      "test-data", po::value(&config.test_data), "test file, evaluated at the end of training")(
      "task-steps", po::value(&config.task_steps)->default_value(config.task_steps),
      "steps per row per pass of a task")(
      "val-fraction",
      po::value(&config.val_fraction)->default_value(config.val_fraction, shortest(config.val_fraction)),
      "text held out for validation")("batch", po::value(&config.batch)->default_value(config.batch),
                                      "parallel streams")(
      "hidden", po::value(&config.hidden)->default_value(config.hidden), "hidden size")(
      "layers", po::value(&config.layers)->default_value(config.layers), "stacked layers")(
      "embedding", po::value(&config.embedding)->default_value(config.embedding),
      "embedding size (0: hidden)")(
      "tie-weights", po::bool_switch(&tie_weights),
      "the head's weight is the embedding's (Press & Wolf 2017; embedding size = hidden size)")(
      "init-range",
      po::value(&config.init_range)->default_value(config.init_range, shortest(config.init_range)),
      "U(-r, r) initialisation (0: PyTorch's)")("epochs", po::value(&epochs), "passes over the data")(
      "max-updates", po::value(&max_updates),
      "updates, counted from the start of training (also when resuming)")(
      "time-limit", po::value(&time_limit), "seconds (default 90 when no other limit is given)")(
      "optimizer", po::value(&config.optimizer.kind)->default_value("adam"), "adam, adamw, sgd or rmsprop")(
      "weight-decay", po::value(&config.optimizer.weight_decay)->default_value(0.0, "0"),
      "L2 on the gradient (sgd, adam, rmsprop) or decoupled decay (adamw), as torch.optim")(
      "nesterov", po::bool_switch(&config.optimizer.nesterov), "sgd: Nesterov momentum")(
      "lr-schedule", po::value(&config.optimizer.schedule)->default_value("constant"),
      "constant, step (--lr-step-every, --lr-gamma), cosine (--warmup, --lr-min, over --max-updates) or "
      "plateau (--patience, --lr-gamma, --lr-min; on the validation loss)")(
      "warmup", po::value(&config.optimizer.warmup)->default_value(0), "cosine: linear warm-up updates")(
      "lr-min", po::value(&config.optimizer.lr_min)->default_value(0.0, "0"),
      "cosine: the final rate; plateau: the lowest rate")(
      "patience", po::value(&config.optimizer.patience)->default_value(config.optimizer.patience),
      "plateau: evaluations without improvement tolerated before the rate is multiplied by --lr-gamma")(
      "lr", po::value(&config.optimizer.lr)->default_value(2e-3, "0.002"), "learning rate")(
      "momentum", po::value(&config.optimizer.momentum)->default_value(0.0, "0"),
      "sgd momentum (0: plain SGD)")("clip", po::value(&config.clip)->default_value(0.0, "0"),
                                     "clip the global gradient norm to this (0: no clipping)")(
      "accumulate", po::value(&config.accumulate)->default_value(config.accumulate),
      "windows per update: their gradients summed into one update (gradient accumulation)")(
      "on-nonfinite", po::value(&outputs.on_nonfinite)->default_value(outputs.on_nonfinite),
      "a non-finite loss or gradient: stop (save the last good parameters), or skip the update")(
      "max-skips", po::value(&outputs.max_skips)->default_value(outputs.max_skips),
      "--on-nonfinite skip: consecutive non-finite updates before stopping anyway")(
      "lr-step-every", po::value(&config.optimizer.step_every)->default_value(0),
      "step decay: multiply lr by --lr-gamma every N updates")(
      "lr-gamma", po::value(&config.optimizer.gamma)->default_value(0.5, "0.5"), "step decay factor")(
      "seed", po::value(&config.seed)->default_value(config.seed), "initialisation and task seed")(
      "init", po::value(&init), "start from these weights (.safetensors, PyTorch names)")(
      "save", po::value(&save), "directory for model.safetensors and checkpoint.safetensors")(
      "save-every", po::value(&outputs.save_every), "also save every N updates (with --save)")(
      "save-every-seconds", po::value(&outputs.save_every_seconds),
      "also save when S seconds have passed since the last save (with --save)")(
      "keep-checkpoints", po::value(&outputs.keep_checkpoints)->default_value(outputs.keep_checkpoints),
      "checkpoints kept: the latest as checkpoint.safetensors, older ones as checkpoint-UPDATE.safetensors")(
      "resume", po::value(&resume),
      "continue the run saved in this directory exactly; it goes on saving there with the run's output "
      "options unless given again")("no-save", po::bool_switch(&no_save),
                                    "with --resume: save nothing (the run saved into its directory)")(
      "keep-best", po::bool_switch(&outputs.keep_best),
      "keep the checkpoint with the best validation loss so far in DIR/best (with --save)")(
      "early-stop", po::value(&outputs.early_stop),
      "stop after N validation runs without a new best validation loss")(
      "metrics", po::value(&outputs.metrics),
      "append JSON lines (every --log-every updates, and every evaluation) to this file")(
      "plot", po::value(&plot_path), "at the end, draw the run's curves from --metrics into this PNG")(
      "eval-every", po::value(&eval_every)->default_value(eval_every),
      "updates between validation runs (0: only at the end; a resume keeps the run's)")(
      "log-every", po::value(&outputs.log_every),
      "updates per metrics line (the mean loss over them) and per progress line when not on a terminal "
      "(default: 10, and at most one line a second)")("sample-length",
                                                      po::value(&sample_length)->default_value(sample_length),
                                                      "tokens sampled at the end (text; 0: none)")(
      "prime", po::value(&prime)->default_value(prime), "text the sample starts from")(
      "temperature", po::value(&temperature)->default_value(temperature, shortest(temperature)),
      "sampling temperature");
  options.add_options()("inputs", po::value(&csv_inputs),
                        "CSV: input columns, comma-separated (default: all others)")(
      "targets", po::value(&csv_targets), "CSV: columns predicted at the next step (default: the inputs)")(
      "target-columns", po::value(&csv_target_columns),
      "CSV: explicit target columns of the same row instead")(
      "reset-column", po::value(&config.csv.reset_column),
      "CSV: a column whose non-zero value starts a new sequence");
  plugin_options.add_to(options);
  po::variables_map vm;
  if (!parse_command_line(
          argc, argv, options, vm,
          "usage: rewind train [options]   (no options: an LSTM on the bundled text, truncated BPTT, 90 s)"))
    return 0;

  BestValidation best;
  if (World::distributed()) {
    // Its horizon estimate would differ between the ranks' shares, and so would its window.
    if (config.trainer == "adaptive")
      throw std::invalid_argument("--trainer adaptive is not available under MPI yet");
    if (World::rank() != 0) {  // rank 0 speaks and writes for all
      plot_path.clear(), sample_length = 0;
      if (!std::freopen("/dev/null", "w", stdout)) throw std::runtime_error("cannot silence rank output");
    }
  }
  if (no_save && (resume.empty() || !save.empty()))
    throw std::invalid_argument(
        "--no-save applies to --resume without --save (a new run saves only with --save)");
  std::map<std::string, std::string> resumed_meta;
  if (!resume.empty()) {
    refuse_run_options_on_resume(vm);
    const fs::path file = fs::path(resume) / "checkpoint.safetensors";
    resumed_meta = trainers::read_checkpoint_metadata(file);
    config = RunConfig::from_json(resumed_meta.at("rewind.run"));
    config.outputs = resumed_outputs(RunOutputs::from_metadata(resumed_meta), outputs, vm);
    best = BestValidation::from(resumed_meta, file.string());
    if (vm["eval-every"].defaulted()) eval_every = config.eval_every;
    config.check_data_unchanged();
    if (save.empty() && !no_save) {
      if (resumed_meta.count("rewind.best_copy_of"))
        throw std::invalid_argument(
            "--resume " + resume + " is the best checkpoint kept by the run saved in '" +
            resumed_meta.at("rewind.best_copy_of") +
            "': give --save DIR for the continued run (or --no-save), so that neither is overwritten");
      save = resume;
    }
    if (no_save)
      config.outputs.save_every = 0, config.outputs.save_every_seconds = 0, config.outputs.keep_best = false;
  } else {
    config.outputs = outputs;
    if (!config.outputs.metrics.empty())
      config.outputs.metrics = fs::absolute(config.outputs.metrics).lexically_normal().string();
    if (!config.task.empty() && vm.count("data"))
      throw std::invalid_argument("give --data or --task, not both");
    if (config.task.empty() && config.data.empty()) config.data = REWIND_DEFAULT_DATA;
    const bool csv = config.task.empty() && is_csv(config.data);
    for (const char* name : {"inputs", "targets", "target-columns", "reset-column"})
      if (vm.count(name) && !csv)
        throw std::invalid_argument(
            std::string("--") + name + " applies to CSV data (a .csv file), not to " +
            (config.task.empty() ? "the text file '" + config.data + "'" : "task '" + config.task + "'"));
    for (const char* name : {"tokens", "vocab-size", "token-dtype", "vocab", "val-data", "test-data"})
      if (vm.count(name) && !vm[name].defaulted() && (csv || !config.task.empty()))
        throw std::invalid_argument(
            std::string("--") + name + " applies to text and token files, not to " +
            (csv ? "the CSV file '" + config.data + "'" : "task '" + config.task + "'"));
    config.vocabulary.mode = trainers::token_mode(token_mode);
    if (!vocab_file.empty()) {
      config.vocabulary = read_vocabulary(vocab_file);
      if (!vm["tokens"].defaulted() && config.vocabulary.mode != trainers::token_mode(token_mode))
        throw std::invalid_argument("--tokens " + token_mode + " does not match the vocabulary file '" +
                                    vocab_file + "' (" + trainers::name_of(config.vocabulary.mode) + ")");
      if (config.token_file() && vm.count("vocab-size") && config.vocab_size != config.vocabulary.size())
        throw std::invalid_argument("--vocab-size " + std::to_string(config.vocab_size) +
                                    " differs from the " + std::to_string(config.vocabulary.size()) +
                                    " symbols of '" + vocab_file + "'");
      if (config.token_file()) config.vocab_size = config.vocabulary.size();
    }
    if (!config.token_file() && fs::path(config.data).extension() == ".bin")
      std::fprintf(stderr, "note: '%s' is read as text (--tokens %s); a token file needs --token-dtype\n",
                   config.data.c_str(), trainers::name_of(config.vocabulary.mode));
    if (vm.count("vocab-size") && !config.token_file() &&
        config.vocabulary.mode != trainers::TokenMode::words)
      throw std::invalid_argument(
          "--vocab-size applies to --tokens words and to token files (--token-dtype)");
    if (vm.count("val-data") && vm.count("val-fraction") && !vm["val-fraction"].defaulted())
      throw std::invalid_argument("give --val-data or --val-fraction, not both");
    config.csv.inputs = split_list(csv_inputs);
    config.csv.targets = split_list(csv_targets);
    config.csv.target_columns = split_list(csv_target_columns);
    config.model_options = plugin_options.option_map();
    if (tie_weights) config.model_options["tie_weights"] = "true";
    PluginOptions trainer_map;
    trainer_map.settings = trainer_settings;
    config.trainer_options = trainer_map.option_map("--trainer-option");
    if (vm.count("k")) config.trainer_options["k"] = std::to_string(k);
    if (vm.count("k1")) config.trainer_options["k1"] = std::to_string(k1);
    if (vm.count("k2")) config.trainer_options["k2"] = std::to_string(k2);
    // k sets both k1 and k2: given with either, one of them would be silently overridden.
    if (config.trainer_options.count("k") &&
        (config.trainer_options.count("k1") || config.trainer_options.count("k2")))
      throw std::invalid_argument("give --k (k1 = k2 = K) or --k1/--k2, not both");
    if (vm.count("segment")) config.trainer_options["segment"] = std::to_string(segment);
    if (vm.count("memory-budget")) config.trainer_options["memory_budget"] = std::to_string(memory_budget);
    // The schedule's length is fixed when the run starts: a resume with another limit keeps it.
    if (config.optimizer.schedule == "cosine") config.optimizer.total_updates = max_updates;
    if (config.optimizer.step_every > 0 && config.optimizer.schedule == "constant")
      config.optimizer.schedule = "step";
    config.validate();
    config.fingerprint_data();
  }
  if ((vm.count("epochs") && epochs < 1) || (vm.count("max-updates") && max_updates < 1) ||
      (vm.count("time-limit") && !(time_limit > 0)))
    throw std::invalid_argument("--epochs, --max-updates and --time-limit must be positive");
  if (eval_every < 0) throw std::invalid_argument("--eval-every must be >= 0 (0: only at the end)");
  config.eval_every = eval_every;
  const RunOutputs& out = config.outputs;
  if (vm.count("log-every") && out.log_every < 1) throw std::invalid_argument("--log-every must be >= 1");
  if (sample_length < 0) throw std::invalid_argument("--sample-length must be >= 0 (0: no sample)");
  if (!(temperature > 0)) throw std::invalid_argument("--temperature must be > 0");
  if (out.on_nonfinite != "stop" && out.on_nonfinite != "skip")
    throw std::invalid_argument("--on-nonfinite must be stop or skip, got '" + out.on_nonfinite + "'");
  if (out.max_skips < 1) throw std::invalid_argument("--max-skips must be >= 1");
  if (!vm.count("time-limit") && !vm.count("max-updates") && !vm.count("epochs")) time_limit = 90;
  if (out.save_every < 0 || out.save_every_seconds < 0 || out.keep_checkpoints < 1)
    throw std::invalid_argument(
        "--save-every and --save-every-seconds must be >= 0, --keep-checkpoints >= 1");
  if ((out.save_every > 0 || out.save_every_seconds > 0) && save.empty())
    throw std::invalid_argument("--save-every and --save-every-seconds need --save DIR");
  if (out.keep_best && save.empty()) throw std::invalid_argument("--keep-best needs --save DIR");
  if (!plot_path.empty() && out.metrics.empty())
    throw std::invalid_argument("--plot draws from the run's metrics: give --metrics FILE too");
  if (!plot_path.empty() && !have_gnuplot())
    throw std::runtime_error("--plot: gnuplot is not installed (apt-get install gnuplot-nox)");
  if (vm.count("early-stop") && out.early_stop < 1) throw std::invalid_argument("--early-stop must be >= 1");

  plugins::Registry registry = plugin_options.load();
  if (resume.empty()) config.record_model_plugin(registry);
  PassData data(config);
  // After the data are read (bad data leave nothing behind), before training (not after it).
  if (!save.empty() && World::rank() == 0) check_writable_directory(save);
  if (out.keep_best && World::rank() == 0) check_writable_directory(fs::path(save) / "best");
  const bool text = config.task.empty() && !is_csv(config.data);
  const bool tokens = data.train(0).vocab_size() > 0;
  for (const auto& [wanted, what] : {std::pair{out.keep_best, "--keep-best"},
                                     {out.early_stop > 0, "--early-stop"},
                                     {config.optimizer.schedule == "plateau", "--lr-schedule plateau"}})
    if (wanted && (!data.validation() || eval_every == 0))
      throw std::invalid_argument(std::string(what) +
                                  " needs validation runs: held-out data and --eval-every > 0");
  const Scores scores{.perplexity = text,
                      .bits = text && config.vocabulary.mode != trainers::TokenMode::words &&
                              !config.vocabulary.symbols.empty()};
  if (text && (config.token_file() || config.vocabulary.mode != trainers::TokenMode::bytes))
    std::printf("tokens: %s, vocabulary of %lld\n",
                config.token_file() ? (config.token_dtype + " ids").c_str()
                                    : trainers::name_of(config.vocabulary.mode),
                static_cast<long long>(config.token_count()));
  auto model = build_model(registry, config, data.train(0));
  auto trainer = registry.make_trainer(config.trainer, config.trainer_options);
  // Serialised now, with the vocabulary known and before training: a config that cannot be stored fails at
  // once.
  const std::string run_json = config.to_json();
  trainers::Optimizer optimizer(config.optimizer);
  trainers::LoopOptions loop_options{.clip = config.clip,
                                     .accumulate = config.accumulate,
                                     .max_updates = max_updates,
                                     .max_passes = epochs,
                                     .time_limit_seconds = time_limit,
                                     .max_nonfinite_skips = out.on_nonfinite == "skip" ? out.max_skips : 0};
  if (World::distributed()) loop_options.reduce = &World::reduce, loop_options.agree = &World::any;
  trainers::Loop loop(
      *model, *trainer, optimizer,
      [&](std::int64_t pass) -> const trainers::Dataset& { return data.train(pass); }, loop_options);
  if (!resume.empty()) {
    const fs::path file = fs::path(resume) / "checkpoint.safetensors";
    const std::int64_t pass = std::stoll(trainers::read_checkpoint_metadata(file).at("rewind.pass"));
    trainer->begin(*model, data.train(pass), loop.tape());
    loop.resume(trainers::restore_checkpoint(
        file, *model, optimizer, *trainer,
        World::distributed() ? World::share(config.batch, "--batch").first : 0, config.batch));
    std::printf("resumed %s at update %lld (pass %lld)\n", resume.c_str(),
                static_cast<long long>(optimizer.updates()), static_cast<long long>(pass));
  } else if (!init.empty()) {
    models::load_parameters(init, *model);
  }

  std::unique_ptr<std::ofstream> metrics;
  if (!out.metrics.empty() && World::rank() == 0) {
    metrics = std::make_unique<std::ofstream>(out.metrics, std::ios::app);
    if (!*metrics) throw std::runtime_error("cannot open metrics file '" + out.metrics + "'");
  }
  std::printf(
      "rewind train: model %s (hidden %lld, %d layer(s), %zu parameter tensors), trainer %s, %s, batch "
      "%lld\n",
      config.model.c_str(), static_cast<long long>(config.hidden), config.layers, model->parameters().size(),
      config.trainer.c_str(),
      config.task.empty() ? ("data " + config.data).c_str() : ("task " + config.task).c_str(),
      static_cast<long long>(config.batch));
  if (World::distributed())
    std::printf(
        "MPI: %d ranks, %lld streams each%s%s, %s threads per rank\n", World::size(),
        static_cast<long long>(config.batch / World::size()),
        data.validation()
            ? (", validation " + std::to_string(data.validation()->batch()) + " streams on rank 0").c_str()
            : "",
        data.test() ? (", test " + std::to_string(data.test()->batch()) + " streams on rank 0").c_str() : "",
        std::getenv("REWIND_NUM_THREADS") ? std::getenv("REWIND_NUM_THREADS") : "all");
  if (!resume.empty()) std::printf("%s\n", describe_outputs(out, save, vm).c_str());
  std::printf("limits:%s%s%s\n", max_updates ? (" " + std::to_string(max_updates) + " updates").c_str() : "",
              epochs ? (" " + std::to_string(epochs) + " passes").c_str() : "",
              time_limit > 0 ? (" " + duration(time_limit)).c_str() : "");
  std::fflush(stdout);

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  Progress progress({.tty = ::isatty(STDOUT_FILENO) != 0,
                     .tokens = tokens,
                     .batch = config.batch,
                     .log_every = out.log_every,
                     .max_updates = max_updates,
                     .time_limit = time_limit,
                     .start_updates = optimizer.updates()},
                    metrics.get());
  // Atomic writes (temporary, fsync, rename, fsync of the directory): DIR holds a complete checkpoint at
  // every moment, so a kill -9 loses at most the updates since the last save.
  double last_save = 0;
  NumberedCheckpoints numbered = NumberedCheckpoints::from(
      resumed_meta, save.empty() ? fs::path() : fs::absolute(save).lexically_normal());
  auto write_run = [&](const fs::path& dir) {
    std::map<std::string, std::string> metadata = best.metadata();
    metadata["rewind.run"] = run_json;
    std::map<std::string, std::string> checkpoint_metadata = metadata;
    checkpoint_metadata[RunOutputs::metadata_key] = out.to_json();
    if (dir != save) checkpoint_metadata["rewind.best_copy_of"] = numbered.dir.string();
    if (out.keep_checkpoints > 1)
      checkpoint_metadata["rewind.numbered_checkpoints"] =
          numbered.metadata(optimizer.updates(), out.keep_checkpoints);
    // The parameters and optimizer are the same on every rank; the carried state of each rank's streams is
    // gathered (every rank takes part) and rank 0 writes the run as one process would have.
    const std::vector<autodiff::Tensor> all_streams = World::gather_rows(trainer->stored_state());
    if (World::rank() != 0) return;
    trainers::save_checkpoint(dir / "checkpoint.safetensors", *model, optimizer, *trainer, loop.position(),
                              checkpoint_metadata, World::distributed() ? &all_streams : nullptr);
    models::save_parameters(dir / "model.safetensors", *model, metadata);
  };
  auto save_run = [&](double seconds) {
    write_run(save);
    last_save = seconds;
    if (out.keep_checkpoints > 1 && World::rank() == 0)
      numbered.saved(optimizer.updates(), out.keep_checkpoints);
  };
  bool stopped_early = false;
  // Evaluated before the periodic save, so that a checkpoint holds what this evaluation changed (the
  // plateau schedule, the best loss) and a resumed run does not evaluate it again.
  auto validate = [&](std::int64_t update) {
    const trainers::Evaluation e = World::combine(trainers::evaluate(*model, *data.validation()));
    report_evaluation("validation", e, scores, metrics.get(), update);
    if (e.count == 0) return;
    if (optimizer.observe_validation(e.loss))
      std::printf(
          "plateau: learning rate reduced to %.3g (no improvement in more than %lld validation runs)\n",
          optimizer.current_lr(), static_cast<long long>(config.optimizer.patience));
    if (best.observe(e.loss, update) && out.keep_best) write_run(fs::path(save) / "best");
    stopped_early = out.early_stop > 0 && best.evaluations_since >= out.early_stop;
  };
  try {
    loop.run([&](const trainers::UpdateReport& r) {
      progress.update(r);
      if (eval_every > 0 && r.update % eval_every == 0 && data.validation()) {
        progress.end_line();
        validate(r.update);
      }
      if (!save.empty() &&
          ((out.save_every > 0 && r.update % out.save_every == 0) ||
           (out.save_every_seconds > 0 && World::any(r.seconds - last_save >= out.save_every_seconds))))
        save_run(r.seconds);
      return !interrupted.load() && !stopped_early;
    });
  } catch (const trainers::NonFiniteError& e) {
    progress.end_line();
    progress.finish();
    // The check runs before the optimizer step: the parameters are still those of the last update, and
    // worth keeping when they are finite (a loss overflowed, not the weights).
    if (save.empty() || !trainers::first_nonfinite_value(model->parameters()).empty() || World::rank() != 0)
      throw;
    const std::string last = std::to_string(optimizer.updates());
    models::save_parameters(fs::path(save) / "model.safetensors", *model,
                            {{"rewind.run", run_json},
                             {"rewind.note", "parameters after update " + last +
                                                 ", the last finite one: training stopped on a non-finite "
                                                 "value in the next update"}});
    throw trainers::NonFiniteError(std::string(e.what()) + "; the parameters after update " + last +
                                   " (the last finite one) are saved in " +
                                   (fs::path(save) / "model.safetensors").string());
  }
  progress.end_line();
  progress.finish();
  if (interrupted) std::printf("interrupted at update %lld\n", static_cast<long long>(optimizer.updates()));
  if (stopped_early)
    std::printf(
        "early stop at update %lld: %lld validation runs without improvement (best loss %.4f at update "
        "%lld%s)\n",
        static_cast<long long>(optimizer.updates()), static_cast<long long>(best.evaluations_since),
        best.loss, static_cast<long long>(best.update),
        out.keep_best ? (", kept in " + (fs::path(save) / "best").string()).c_str() : "");
  progress.summary(optimizer.updates());
  if (World::distributed()) {
    const World::Traffic t = World::traffic();
    const double per = static_cast<double>(std::max<std::int64_t>(t.exchanges, 1));
    std::printf(
        "MPI gradient exchange: %lld updates, %.0f bytes sent per update and rank, %.3f ms per update "
        "(ring allreduce and waiting for the slower ranks, rank 0)\n",
        static_cast<long long>(t.exchanges), static_cast<double>(t.bytes) / per, 1e3 * t.seconds / per);
  }

  if (data.validation() && !interrupted)  // when interrupted, save first: a grace period may be short
    report_evaluation("validation (final)", World::combine(trainers::evaluate(*model, *data.validation())),
                      scores, metrics.get(), optimizer.updates());
  if (data.test() && !interrupted)
    report_evaluation("test", World::combine(trainers::evaluate(*model, *data.test())), scores, metrics.get(),
                      optimizer.updates(), "test");
  if (!save.empty()) {
    save_run(0);
    std::printf("saved %s (model.safetensors, checkpoint.safetensors) at update %lld\n", save.c_str(),
                static_cast<long long>(optimizer.updates()));
  }
  if (!plot_path.empty()) {
    metrics->flush();
    plot_runs({out.metrics}, plot_path);
  }
  if (text && sample_length > 0 && !config.vocabulary.symbols.empty()) {
    // The prime's symbols the vocabulary knows, or its first symbol.
    std::vector<std::int32_t> primed =
        config.vocabulary.encode(prime, "--prime", {.skip_unknown = true, .final_eos = false});
    if (primed.empty()) primed = {0};
    std::mt19937_64 rng(config.seed);
    std::vector<std::int32_t> ids = primed;
    std::ranges::copy(trainers::sample(*model, primed, sample_length, temperature, rng),
                      std::back_inserter(ids));
    std::printf("\nsample (temperature %.2f):\n%s\n", temperature, config.vocabulary.decode(ids).c_str());
  }
  return 0;
}

}  // namespace rwd::cli
