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
#include "plugin_options.hpp"
#include "rewind/models/safetensors.hpp"
#include "rewind/trainers/checkpoint.hpp"
#include "rewind/trainers/evaluate.hpp"
#include "rewind/trainers/loop.hpp"
#include "run_config.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace rwd::cli {
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

std::string text_of(const std::string& vocabulary, const std::vector<std::int32_t>& ids) {
  std::string s;
  for (std::int32_t id : ids) s += vocabulary[static_cast<std::size_t>(id)];
  return s;
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
  }
  const trainers::Dataset& train(std::int64_t pass) {
    if (series_.train) return *series_.train;
    if (config_.task.empty()) return *text_.train;
    if (pass != task_pass_) {
      task_ = trainers::synthetic_task(config_.task, config_.batch, config_.task_steps,
                                       task_seed(config_.seed, static_cast<std::uint64_t>(pass)));
      task_pass_ = pass;
    }
    return *task_;
  }
  const trainers::Dataset* validation() {
    if (!config_.task.empty() && !held_out_)  // a sample no training pass sees
      held_out_ = trainers::synthetic_task(config_.task, config_.batch, config_.task_steps,
                                           task_seed(config_.seed, validation_stream));
    if (series_.train) return series_.validation.get();
    return config_.task.empty() ? text_.validation.get() : held_out_.get();
  }

 private:
  RunConfig& config_;
  TextData text_;
  SeriesSplit series_;
  std::unique_ptr<trainers::Dataset> task_, held_out_;
  std::int64_t task_pass_ = -1;
};

void report_evaluation(const char* label, const trainers::Evaluation& e, bool text, std::ofstream* metrics,
                       std::int64_t update) {
  if (e.count == 0) return;
  std::printf("%s: loss %.4f", label, e.loss);
  if (text)
    std::printf(", %.3f bits per character, perplexity %.2f", e.loss / std::log(2.0), std::exp(e.loss));
  if (e.correct > 0 || text)
    std::printf(", accuracy %.3f", static_cast<double>(e.correct) / static_cast<double>(e.count));
  std::printf("\n");
  if (metrics)
    *metrics << nlohmann::json{{"update", update},
                               {"eval_loss", e.loss},
                               {"eval_count", e.count},
                               {"eval_accuracy",
                                static_cast<double>(e.correct) / static_cast<double>(e.count)}}
                    .dump()
             << std::endl;
}

// Progress lines (rewritten in place on a terminal, every --log-every updates otherwise) and metrics lines.
class Progress {
 public:
  struct Settings {
    bool tty = false;
    bool tokens = false;  // accuracy is shown for token targets only
    std::int64_t batch = 1, log_every = 50, max_updates = 0;
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
    const double rate = step_items_ / std::max(r.seconds, 1e-9);
    if (metrics_) {
      nlohmann::json line{{"update", r.update},
                          {"pass", r.pass},
                          {"loss", r.stats.loss},
                          {"grad_norm", r.grad_norm},
                          {"lr", r.lr},
                          {"seconds", r.seconds},
                          {"steps_x_batch_per_second", rate},
                          {"skipped_nonfinite", r.skipped_nonfinite},
                          {"tape_peak_bytes", r.stats.tape.peak_bytes},
                          {"tape_reserved_bytes", r.stats.tape.reserved_bytes},
                          {"arena_block_allocations", r.stats.tape.block_allocations}};
      if (r.stats.k2 > 0) line["k1"] = r.stats.k1, line["k2"] = r.stats.k2;  // the window in use
      *metrics_ << line.dump() << std::endl;
    }
    const std::int64_t done_here = r.update - s_.start_updates;
    const bool due =
        s_.tty ? r.seconds - last_print_ >= 0.25 : (r.update % s_.log_every == 0 || done_here == 1);
    if (!due) return;
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
        "%6.1f "
        "MiB  "
        "ETA "
        "%s%s",
        s_.tty ? "\r" : "", static_cast<long long>(r.update), static_cast<long long>(r.pass), r.stats.loss,
        smoothed_, accuracy, window, r.lr, rate, static_cast<double>(r.stats.tape.peak_bytes) / (1 << 20),
        eta >= 0 ? duration(eta).c_str() : "?", s_.tty ? "   " : "\n");
    in_line_ = s_.tty;
    window_correct_ = window_count_ = 0;
    std::fflush(stdout);
  }
  // Ends a progress line rewritten in place, before other output.
  void end_line() {
    if (in_line_) std::printf("\n");
    in_line_ = false;
  }
  void summary(std::int64_t updates) const {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    std::printf("trained %lld updates (to update %lld) in %.1f s, %.0f time steps x batch per second\n",
                static_cast<long long>(updates - s_.start_updates), static_cast<long long>(updates), seconds,
                step_items_ / std::max(seconds, 1e-9));
    if (skipped_ > 0) std::printf("skipped %lld non-finite update(s)\n", static_cast<long long>(skipped_));
  }

 private:
  Settings s_;
  std::ofstream* metrics_;
  std::chrono::steady_clock::time_point started_;
  double smoothed_ = NAN, last_print_ = -1, step_items_ = 0;
  std::int64_t window_correct_ = 0, window_count_ = 0, skipped_ = 0;
  bool in_line_ = false;
};

// With --resume the stored run defines model, data and hyperparameters: only limits and outputs may be given.
void refuse_run_options_on_resume(const po::variables_map& vm) {
  // clang-format off
  static const std::set<std::string> allowed = {
      "resume", "epochs", "max-updates", "time-limit", "save", "save-every", "save-every-seconds",
      "keep-checkpoints", "metrics", "eval-every", "log-every", "sample-length", "prime", "temperature",
      "on-nonfinite", "max-skips", "plugin", "plugin-dir", "help"};
  // clang-format on
  for (const auto& [name, value] : vm)
    if (!value.defaulted() && !allowed.count(name))
      throw std::invalid_argument("--" + name +
                                  " cannot be combined with --resume: the saved run fixes model, data and "
                                  "hyperparameters (with --resume give only limits and outputs: --epochs, "
                                  "--max-updates, --time-limit, --save, --save-every, --save-every-seconds, "
                                  "--keep-checkpoints, --metrics, "
                                  "--eval-every, --log-every, "
                                  "--sample-length, --prime, --temperature, --plugin, --plugin-dir)");
}

// checkpoint.safetensors is the latest; the K - 1 before it stay as checkpoint-UPDATE.safetensors, hard links
// to files that are only ever replaced by rename, never written in place.
void keep_latest_checkpoints(const fs::path& dir, std::int64_t update, std::int64_t keep) {
  const fs::path numbered = dir / ("checkpoint-" + std::to_string(update) + ".safetensors");
  std::error_code ec;
  fs::remove(numbered, ec);
  fs::create_hard_link(dir / "checkpoint.safetensors", numbered, ec);
  if (ec) throw std::runtime_error("cannot keep checkpoint '" + numbered.string() + "': " + ec.message());
  std::vector<std::pair<std::int64_t, fs::path>> kept;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    std::int64_t n = 0;
    if (std::sscanf(name.c_str(), "checkpoint-%ld.safetensors", &n) == 1) kept.emplace_back(n, entry.path());
  }
  std::sort(kept.rbegin(), kept.rend());
  for (std::size_t i = static_cast<std::size_t>(keep); i < kept.size(); ++i) fs::remove(kept[i].second, ec);
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
  std::int64_t epochs = 0, max_updates = 0, eval_every = 500, log_every = 50, sample_length = 300;
  double time_limit = 0, temperature = 0.8;
  std::string save, resume, metrics_path, init, prime = "ROMEO:";
  std::int64_t save_every = 0, keep_checkpoints = 1, max_skips = 10;
  std::string on_nonfinite = "stop";
  double save_every_seconds = 0;
  std::int64_t k = 0, k1 = 0, k2 = 0, segment = 0, memory_budget = 0;
  std::string csv_inputs, csv_targets, csv_target_columns;

  po::options_description options("rewind train options");
  options.add_options()("help,h", "show this help")("model",
                                                    po::value(&config.model)->default_value(config.model),
                                                    "model plugin (rnn, gru, lstm, or your own)")(
      "trainer", po::value(&config.trainer)->default_value(config.trainer),
      "trainer plugin: full, truncated, checkpointed")("k", po::value(&k), "truncated: window, k1 = k2 = K")(
      "k1", po::value(&k1), "truncated: steps between updates")(
      "k2", po::value(&k2), "truncated: steps backpropagated per update (>= k1)")(
      "segment", po::value(&segment), "checkpointed: steps between kept states (default ceil(sqrt(T)))")(
      "memory-budget", po::value(&memory_budget), "checkpointed: tape bytes for one segment")(
      "trainer-option", po::value(&trainer_settings)->composing(),
      "KEY=VALUE for the trainer plugin (repeatable)")(
      "data", po::value(&config.data), "text file, character level (default: the bundled tinyshakespeare)")(
      "task", po::value(&config.task), "synthetic task instead: recall:L, adding:L, delay:D")(
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
      "constant, step (--lr-step-every, --lr-gamma) or cosine (--warmup, --lr-min, over --max-updates)")(
      "warmup", po::value(&config.optimizer.warmup)->default_value(0), "cosine: linear warm-up updates")(
      "lr-min", po::value(&config.optimizer.lr_min)->default_value(0.0, "0"), "cosine: the final rate")(
      "lr", po::value(&config.optimizer.lr)->default_value(2e-3, "0.002"), "learning rate")(
      "momentum", po::value(&config.optimizer.momentum)->default_value(0.0, "0"),
      "sgd momentum (0: plain SGD)")("clip", po::value(&config.clip)->default_value(0.0, "0"),
                                     "clip the global gradient norm to this (0: no clipping)")(
      "on-nonfinite", po::value(&on_nonfinite)->default_value(on_nonfinite),
      "a non-finite loss or gradient: stop (save the last good parameters), or skip the update")(
      "max-skips", po::value(&max_skips)->default_value(max_skips),
      "--on-nonfinite skip: consecutive non-finite updates before stopping anyway")(
      "lr-step-every", po::value(&config.optimizer.step_every)->default_value(0),
      "step decay: multiply lr by --lr-gamma every N updates")(
      "lr-gamma", po::value(&config.optimizer.gamma)->default_value(0.5, "0.5"), "step decay factor")(
      "seed", po::value(&config.seed)->default_value(config.seed), "initialisation and task seed")(
      "init", po::value(&init), "start from these weights (.safetensors, PyTorch names)")(
      "save", po::value(&save), "directory for model.safetensors and checkpoint.safetensors")(
      "save-every", po::value(&save_every), "also save every N updates (with --save)")(
      "save-every-seconds", po::value(&save_every_seconds), "also save every S seconds (with --save)")(
      "keep-checkpoints", po::value(&keep_checkpoints)->default_value(keep_checkpoints),
      "checkpoints kept: the latest as checkpoint.safetensors, older ones as checkpoint-UPDATE.safetensors")(
      "resume", po::value(&resume), "continue the run saved in this directory exactly")(
      "metrics", po::value(&metrics_path), "append one JSON line per update and evaluation to this file")(
      "eval-every", po::value(&eval_every)->default_value(eval_every),
      "updates between validation runs (0: only at the end)")(
      "log-every", po::value(&log_every)->default_value(log_every),
      "updates between progress lines when not on a terminal")(
      "sample-length", po::value(&sample_length)->default_value(sample_length),
      "characters sampled at the end (text; 0: none)")("prime", po::value(&prime)->default_value(prime),
                                                       "text the sample starts from")(
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

  if (!resume.empty()) {
    refuse_run_options_on_resume(vm);
    const auto meta = trainers::read_checkpoint_metadata(fs::path(resume) / "checkpoint.safetensors");
    config = RunConfig::from_json(meta.at("rewind.run"));
    config.check_data_unchanged();
  } else {
    if (!config.task.empty() && vm.count("data"))
      throw std::invalid_argument("give --data or --task, not both");
    if (config.task.empty() && config.data.empty()) config.data = REWIND_DEFAULT_DATA;
    const bool csv = config.task.empty() && is_csv(config.data);
    for (const char* name : {"inputs", "targets", "target-columns", "reset-column"})
      if (vm.count(name) && !csv)
        throw std::invalid_argument(
            std::string("--") + name + " applies to CSV data (a .csv file), not to " +
            (config.task.empty() ? "the text file '" + config.data + "'" : "task '" + config.task + "'"));
    config.csv.inputs = split_list(csv_inputs);
    config.csv.targets = split_list(csv_targets);
    config.csv.target_columns = split_list(csv_target_columns);
    config.model_options = plugin_options.option_map();
    PluginOptions trainer_map;
    trainer_map.settings = trainer_settings;
    config.trainer_options = trainer_map.option_map("--trainer-option");
    if (vm.count("k")) config.trainer_options["k"] = std::to_string(k);
    if (vm.count("k1")) config.trainer_options["k1"] = std::to_string(k1);
    if (vm.count("k2")) config.trainer_options["k2"] = std::to_string(k2);
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
  if (log_every < 1) throw std::invalid_argument("--log-every must be >= 1");
  if (sample_length < 0) throw std::invalid_argument("--sample-length must be >= 0 (0: no sample)");
  if (!(temperature > 0)) throw std::invalid_argument("--temperature must be > 0");
  if (on_nonfinite != "stop" && on_nonfinite != "skip")
    throw std::invalid_argument("--on-nonfinite must be stop or skip, got '" + on_nonfinite + "'");
  if (max_skips < 1) throw std::invalid_argument("--max-skips must be >= 1");
  if (!vm.count("time-limit") && !vm.count("max-updates") && !vm.count("epochs")) time_limit = 90;
  if (!save.empty()) check_writable_directory(save);  // before training, not after it
  if (save_every < 0 || save_every_seconds < 0 || keep_checkpoints < 1)
    throw std::invalid_argument(
        "--save-every and --save-every-seconds must be >= 0, --keep-checkpoints >= 1");
  if ((save_every > 0 || save_every_seconds > 0) && save.empty())
    throw std::invalid_argument("--save-every and --save-every-seconds need --save DIR");

  const plugins::Registry registry = plugin_options.load();
  PassData data(config);
  const bool text = config.task.empty() && !is_csv(config.data);
  const bool tokens = data.train(0).vocab_size() > 0;
  auto model = build_model(registry, config, data.train(0));
  auto trainer = registry.make_trainer(config.trainer, config.trainer_options);
  // Serialised now, with the vocabulary known and before training: a config that cannot be stored fails at
  // once.
  const std::string run_json = config.to_json();
  trainers::Optimizer optimizer(config.optimizer);
  trainers::Loop loop(*model, *trainer, optimizer,
                      [&](std::int64_t pass) -> const trainers::Dataset& { return data.train(pass); },
                      {.clip = config.clip,
                       .max_updates = max_updates,
                       .max_passes = epochs,
                       .time_limit_seconds = time_limit,
                       .max_nonfinite_skips = on_nonfinite == "skip" ? max_skips : 0});
  if (!resume.empty()) {
    const fs::path file = fs::path(resume) / "checkpoint.safetensors";
    const std::int64_t pass = std::stoll(trainers::read_checkpoint_metadata(file).at("rewind.pass"));
    trainer->begin(*model, data.train(pass), loop.tape());
    loop.resume(trainers::restore_checkpoint(file, *model, optimizer, *trainer));
    std::printf("resumed %s at update %lld (pass %lld)\n", resume.c_str(),
                static_cast<long long>(optimizer.updates()), static_cast<long long>(pass));
  } else if (!init.empty()) {
    models::load_parameters(init, *model);
  }

  std::unique_ptr<std::ofstream> metrics;
  if (!metrics_path.empty()) {
    metrics = std::make_unique<std::ofstream>(metrics_path, std::ios::app);
    if (!*metrics) throw std::runtime_error("cannot open metrics file '" + metrics_path + "'");
  }
  std::printf(
      "rewind train: model %s (hidden %lld, %d layer(s), %zu parameter tensors), trainer %s, %s, batch "
      "%lld\n",
      config.model.c_str(), static_cast<long long>(config.hidden), config.layers, model->parameters().size(),
      config.trainer.c_str(),
      config.task.empty() ? ("data " + config.data).c_str() : ("task " + config.task).c_str(),
      static_cast<long long>(config.batch));
  std::printf("limits:%s%s%s\n", max_updates ? (" " + std::to_string(max_updates) + " updates").c_str() : "",
              epochs ? (" " + std::to_string(epochs) + " passes").c_str() : "",
              time_limit > 0 ? (" " + duration(time_limit)).c_str() : "");
  std::fflush(stdout);

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  Progress progress({.tty = ::isatty(STDOUT_FILENO) != 0,
                     .tokens = tokens,
                     .batch = config.batch,
                     .log_every = log_every,
                     .max_updates = max_updates,
                     .time_limit = time_limit,
                     .start_updates = optimizer.updates()},
                    metrics.get());
  // Atomic writes (temporary, fsync, rename, fsync of the directory): DIR holds a complete checkpoint at
  // every moment, so a kill -9 loses at most the updates since the last save.
  double last_save = 0;
  auto save_run = [&](double seconds) {
    const fs::path dir = save;
    trainers::save_checkpoint(dir / "checkpoint.safetensors", *model, optimizer, *trainer, loop.position(),
                              {{"rewind.run", run_json}});
    models::save_parameters(dir / "model.safetensors", *model, {{"rewind.run", run_json}});
    last_save = seconds;
    if (keep_checkpoints > 1) keep_latest_checkpoints(dir, optimizer.updates(), keep_checkpoints);
  };
  try {
    loop.run([&](const trainers::UpdateReport& r) {
      progress.update(r);
      if (!save.empty() && ((save_every > 0 && r.update % save_every == 0) ||
                            (save_every_seconds > 0 && r.seconds - last_save >= save_every_seconds)))
        save_run(r.seconds);
      if (eval_every > 0 && r.update % eval_every == 0 && data.validation()) {
        progress.end_line();
        report_evaluation("validation", trainers::evaluate(*model, *data.validation()), text, metrics.get(),
                          r.update);
      }
      return !interrupted.load();
    });
  } catch (const trainers::NonFiniteError& e) {
    progress.end_line();
    // The check runs before the optimizer step: the parameters are still those of the last update, and
    // worth keeping when they are finite (a loss overflowed, not the weights).
    if (save.empty() || !trainers::first_nonfinite(model->parameters()).empty()) throw;
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
  if (interrupted) std::printf("interrupted at update %lld\n", static_cast<long long>(optimizer.updates()));
  progress.summary(optimizer.updates());

  if (data.validation() && !interrupted)  // when interrupted, save first: a grace period may be short
    report_evaluation("validation (final)", trainers::evaluate(*model, *data.validation()), text,
                      metrics.get(), optimizer.updates());
  if (!save.empty()) {
    save_run(0);
    std::printf("saved %s (model.safetensors, checkpoint.safetensors) at update %lld\n", save.c_str(),
                static_cast<long long>(optimizer.updates()));
  }
  if (text && sample_length > 0) {
    std::string usable;
    for (char c : prime)
      if (config.vocabulary.find(c) != std::string::npos) usable += c;
    if (usable.empty()) usable = config.vocabulary.substr(0, 1);
    std::mt19937_64 rng(config.seed);
    const auto ids = trainers::sample(*model, trainers::CharVocabulary{config.vocabulary}.encode(usable),
                                      sample_length, temperature, rng);
    std::printf("\nsample (temperature %.2f):\n%s%s\n", temperature, usable.c_str(),
                text_of(config.vocabulary, ids).c_str());
  }
  return 0;
}

}  // namespace rwd::cli
