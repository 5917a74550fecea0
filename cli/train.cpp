// rewind train: the main job. Trains a model plugin with a trainer plugin on text or a synthetic task, shows
// progress, evaluates, checkpoints (Ctrl-C / SIGTERM save and exit), resumes exactly, and samples.
#include <unistd.h>

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

std::vector<std::string> split_list(const std::string& list) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < list.size()) {
    const std::size_t comma = std::min(list.find(',', start), list.size());
    if (comma > start) out.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
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

}  // namespace

int run_train(int argc, const char* const* argv) {
  RunConfig config;
  PluginOptions plugin_options;
  std::vector<std::string> trainer_settings;
  std::int64_t epochs = 0, max_updates = 0, eval_every = 500, log_every = 50, sample_length = 300;
  double time_limit = 0, temperature = 0.8;
  std::string save, resume, metrics_path, init, prime = "ROMEO:";
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
      "steps per row per pass of a task")("val-fraction",
                                          po::value(&config.val_fraction)->default_value(config.val_fraction),
                                          "text held out for validation")(
      "batch", po::value(&config.batch)->default_value(config.batch), "parallel streams")(
      "hidden", po::value(&config.hidden)->default_value(config.hidden), "hidden size")(
      "layers", po::value(&config.layers)->default_value(config.layers), "stacked layers")(
      "embedding", po::value(&config.embedding)->default_value(config.embedding),
      "embedding size (0: hidden)")(
      "init-range", po::value(&config.init_range)->default_value(config.init_range),
      "U(-r, r) initialisation (0: PyTorch's)")("epochs", po::value(&epochs), "passes over the data")(
      "max-updates", po::value(&max_updates),
      "updates, counted from the start of training (also when resuming)")(
      "time-limit", po::value(&time_limit), "seconds (default 90 when no other limit is given)")(
      "optimizer", po::value(&config.optimizer.kind)->default_value("adam"), "adam or sgd")(
      "lr", po::value(&config.optimizer.lr)->default_value(2e-3), "learning rate")(
      "momentum", po::value(&config.optimizer.momentum)->default_value(0.0), "sgd momentum (0: plain SGD)")(
      "clip", po::value(&config.clip)->default_value(0.0),
      "clip the global gradient norm to this (0: no clipping)")(
      "lr-step-every", po::value(&config.optimizer.step_every)->default_value(0),
      "step decay: multiply lr by --lr-gamma every N updates")(
      "lr-gamma", po::value(&config.optimizer.gamma)->default_value(0.5), "step decay factor")(
      "seed", po::value(&config.seed)->default_value(config.seed), "initialisation and task seed")(
      "init", po::value(&init), "start from these weights (.safetensors, PyTorch names)")(
      "save", po::value(&save), "directory for model.safetensors and checkpoint.safetensors")(
      "resume", po::value(&resume), "continue the run saved in this directory exactly")(
      "metrics", po::value(&metrics_path), "append one JSON line per update and evaluation to this file")(
      "eval-every", po::value(&eval_every)->default_value(eval_every),
      "updates between validation runs (0: only at the end)")(
      "log-every", po::value(&log_every)->default_value(log_every),
      "updates between progress lines when not on a terminal")(
      "sample-length", po::value(&sample_length)->default_value(sample_length),
      "characters sampled at the end (text; 0: none)")("prime", po::value(&prime)->default_value(prime),
                                                       "text the sample starts from")(
      "temperature", po::value(&temperature)->default_value(temperature), "sampling temperature");
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
    // The stored run defines model, data and hyperparameters; the command line adds limits and outputs.
    const auto meta = trainers::read_checkpoint_metadata(fs::path(resume) / "checkpoint.safetensors");
    config = RunConfig::from_json(meta.at("rewind.run"));
  } else {
    if (!config.task.empty() && vm.count("data"))
      throw std::invalid_argument("give --data or --task, not both");
    if (config.task.empty() && config.data.empty()) config.data = REWIND_DEFAULT_DATA;
    config.csv.inputs = split_list(csv_inputs);
    config.csv.targets = split_list(csv_targets);
    config.csv.target_columns = split_list(csv_target_columns);
    config.model_options = plugin_options.option_map();
    PluginOptions trainer_map;
    trainer_map.settings = trainer_settings;
    config.trainer_options = trainer_map.option_map();
    if (vm.count("k")) config.trainer_options["k"] = std::to_string(k);
    if (vm.count("k1")) config.trainer_options["k1"] = std::to_string(k1);
    if (vm.count("k2")) config.trainer_options["k2"] = std::to_string(k2);
    if (vm.count("segment")) config.trainer_options["segment"] = std::to_string(segment);
    if (vm.count("memory-budget")) config.trainer_options["memory_budget"] = std::to_string(memory_budget);
  }
  if ((vm.count("epochs") && epochs < 1) || (vm.count("max-updates") && max_updates < 1) ||
      (vm.count("time-limit") && !(time_limit > 0)))
    throw std::invalid_argument("--epochs, --max-updates and --time-limit must be positive");
  if (!vm.count("time-limit") && !vm.count("max-updates") && !vm.count("epochs")) time_limit = 90;

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
                       .time_limit_seconds = time_limit});
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

  if (!save.empty()) fs::create_directories(save);  // now: the metrics file may live there
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
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  const std::int64_t start_updates = optimizer.updates();
  const auto started = std::chrono::steady_clock::now();
  double smoothed = NAN, last_print = -1, step_items = 0;
  std::int64_t window_correct = 0, window_count = 0;
  loop.run([&](const trainers::UpdateReport& r) {
    smoothed = std::isnan(smoothed) ? r.stats.loss : 0.95 * smoothed + 0.05 * r.stats.loss;
    step_items += static_cast<double>(r.steps_recorded * config.batch);
    window_correct += r.stats.correct, window_count += r.stats.loss_count;
    const double rate = step_items / std::max(r.seconds, 1e-9);
    if (metrics)
      *metrics << nlohmann::json{{"update", r.update},
                                 {"pass", r.pass},
                                 {"loss", r.stats.loss},
                                 {"grad_norm", r.grad_norm},
                                 {"lr", r.lr},
                                 {"seconds", r.seconds},
                                 {"steps_x_batch_per_second", rate},
                                 {"tape_peak_bytes", r.stats.tape.peak_bytes}}
                      .dump()
               << std::endl;
    const std::int64_t done_here = r.update - start_updates;
    double eta = -1;
    if (max_updates > 0)
      eta = r.seconds / static_cast<double>(done_here) * static_cast<double>(max_updates - r.update);
    if (time_limit > 0) eta = eta < 0 ? time_limit - r.seconds : std::min(eta, time_limit - r.seconds);
    const bool due = tty ? r.seconds - last_print >= 0.25
                         : (r.update % std::max<std::int64_t>(log_every, 1) == 0 || done_here == 1);
    if (due) {
      last_print = r.seconds;
      std::printf(
          "%supdate %6lld  pass %3lld  loss %.4f (smoothed %.4f)  acc %.3f  %7.0f steps x batch/s  tape "
          "%6.1f MiB  ETA %s%s",
          tty ? "\r" : "", static_cast<long long>(r.update), static_cast<long long>(r.pass), r.stats.loss,
          smoothed,
          window_count && tokens ? static_cast<double>(window_correct) / static_cast<double>(window_count)
                                 : NAN,
          rate, static_cast<double>(r.stats.tape.peak_bytes) / (1 << 20),
          eta >= 0 ? duration(eta).c_str() : "?", tty ? "   " : "\n");
      window_correct = window_count = 0;
      std::fflush(stdout);
    }
    if (eval_every > 0 && r.update % eval_every == 0 && data.validation()) {
      if (tty) std::printf("\n");
      report_evaluation("validation", trainers::evaluate(*model, *data.validation()), text, metrics.get(),
                        r.update);
    }
    return !interrupted.load();
  });
  if (tty) std::printf("\n");
  if (interrupted) std::printf("interrupted at update %lld\n", static_cast<long long>(optimizer.updates()));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("trained %lld updates (to update %lld) in %.1f s, %.0f time steps x batch per second\n",
              static_cast<long long>(optimizer.updates() - start_updates),
              static_cast<long long>(optimizer.updates()), seconds, step_items / std::max(seconds, 1e-9));

  if (data.validation() && !interrupted)  // when interrupted, save first: a grace period may be short
    report_evaluation("validation (final)", trainers::evaluate(*model, *data.validation()), text,
                      metrics.get(), optimizer.updates());
  if (!save.empty()) {
    fs::create_directories(save);
    const std::string& run = run_json;
    trainers::save_checkpoint(fs::path(save) / "checkpoint.safetensors", *model, optimizer, *trainer,
                              loop.position(), {{"rewind.run", run}});
    std::vector<std::pair<std::string, const autodiff::Tensor*>> params;
    for (autodiff::Parameter* p : model->parameters()) params.emplace_back(p->name(), &p->value());
    models::save_safetensors(fs::path(save) / "model.safetensors", params,
                             {{"format", "pt"}, {"rewind.run", run}});
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
