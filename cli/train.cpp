// rewind train: the main job. Parses the options into a run (runtime::Training does the work), shows
// progress, and prints evaluations, saves and a sample. Ctrl-C or SIGTERM stops after the update and saves.
#include <unistd.h>

#include <atomic>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <random>
#include <set>
#include <string_view>
#include <tuple>

#include "commands.hpp"
#include "parse.hpp"
#include "plot.hpp"
#include "plugin_options.hpp"
#include "rewind/runtime/run_config.hpp"
#include "rewind/runtime/training.hpp"
#include "rewind/runtime/world.hpp"
#include "rewind/trainers/schedule.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace rwd::cli {
using namespace rwd::runtime;  // RunConfig and the run it describes

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

// Everything rewind train is told, bound to where it goes.
struct TrainOptions {
  RunConfig config;
  RunOutputs outputs;  // as given; a resumed run takes the stored ones for the rest
  PluginOptions plugins;
  std::vector<std::string> trainer_settings;
  Limits limits;
  RunFiles files;
  std::string resume, plot, prime = "ROMEO:", csv_inputs, csv_targets, csv_target_columns, csv_keys,
                            missing = "error", token_mode = "bytes", vocab_file;
  std::int64_t eval_every = RunConfig().eval_every, sample_length = 300, k = 0, k1 = 0, k2 = 0, segment = 0;
  std::string memory_budget;
  double temperature = 0.8;
  bool tie_weights = false, no_save = false;

  po::options_description describe(bool help);

 private:
  void add_run_options(po::options_description& o, bool help);
  void add_optimizer_options(po::options_description& o);
  void add_output_options(po::options_description& o);
};

void TrainOptions::add_run_options(po::options_description& o, bool help) {
  // Help lists the plugins installed now (found on the default search path only when help is asked for).
  const auto found = [&](plugins::Kind kind) { return help ? plugin_names(kind) : std::string(); };
  RunConfig& c = config;
  o.add_options()("help,h", "show this help")(
      "model", po::value(&c.model)->default_value(c.model),
      ("model plugin: " + found(plugins::Kind::model) + " (--plugin FILE adds your own)").c_str())(
      "trainer", po::value(&c.trainer)->default_value(c.trainer),
      ("trainer plugin: " + found(plugins::Kind::trainer) + " (rewind plugins lists their options)").c_str())(
      "k", po::value(&k), "truncated: window, k1 = k2 = K (not with --k1, --k2)")(
      "k1", po::value(&k1), "truncated: steps between updates")(
      "k2", po::value(&k2), "truncated: steps backpropagated per update (>= k1)")(
      "segment", po::value(&segment), "checkpointed: steps between kept states (default ceil(sqrt(T)))")(
      "memory-budget", po::value(&memory_budget),
      "checkpointed: bytes (e.g. 50MiB, or 5% of full BPTT's tape) for kept states and tape, planned for the "
      "fewest recomputed steps; adaptive: tape bytes that cap k2")(
      "trainer-option", po::value(&trainer_settings)->composing(),
      "KEY=VALUE for the trainer plugin (repeatable)")(
      "data", po::value(&c.data),
      "text file (tokens as --tokens), token file (with --token-dtype) or CSV time series (.csv) (default: "
      "the "
      "bundled tinyshakespeare)")("task", po::value(&c.task),
                                  "synthetic task instead: recall:L, adding:L, delay:D")(
      "tokens", po::value(&token_mode)->default_value(token_mode),
      "text: bytes (every byte a symbol), chars (UTF-8 code points) or words (whitespace, <eos> per line)")(
      "vocab-size", po::value(&c.vocab_size),
      "symbols in all, <unk> included: words: the N - 1 most frequent and <unk> for the rest; token files: "
      "ids "
      "are below N")("token-dtype", po::value(&c.token_dtype),
                     "--data is a token file of little-endian uint16 or uint32 ids (nanoGPT's train.bin)")(
      "vocab", po::value(&vocab_file), "vocabulary file written by rewind tokenize (token files: to print)")(
      "val-data", po::value(&c.val_data), "validation file instead of --val-fraction (same format)")(
      "test-data", po::value(&c.test_data), "test file, evaluated at the end of training")(
      "task-steps", po::value(&c.task_steps)->default_value(c.task_steps),
      "steps per row per pass of a task")(
      "val-fraction", po::value(&c.val_fraction)->default_value(c.val_fraction, shortest(c.val_fraction)),
      "text held out for validation")("batch", po::value(&c.batch)->default_value(c.batch),
                                      "parallel streams")(
      "hidden", po::value(&c.hidden)->default_value(c.hidden), "hidden size")(
      "layers", po::value(&c.layers)->default_value(c.layers), "stacked layers")(
      "embedding", po::value(&c.embedding)->default_value(c.embedding), "embedding size (0: hidden)")(
      "tie-weights", po::bool_switch(&tie_weights),
      "the head's weight is the embedding's (Press & Wolf 2017; embedding size = hidden size)")(
      "init-range", po::value(&c.init_range)->default_value(c.init_range, shortest(c.init_range)),
      "U(-r, r) initialisation (0: PyTorch's)")("epochs", po::value(&limits.epochs), "passes over the data")(
      "max-updates", po::value(&limits.max_updates),
      "updates, counted from the start of training (also when resuming)")(
      "time-limit", po::value(&limits.time_limit), "seconds (default 90 when no other limit is given)");
  o.add_options()("inputs", po::value(&csv_inputs),
                  "CSV: input columns, comma-separated (default: all others)")(
      "targets", po::value(&csv_targets), "CSV: columns predicted at the next step (default: the inputs)")(
      "target-columns", po::value(&csv_target_columns),
      "CSV: explicit target columns of the same row instead")(
      "reset-column", po::value(&c.csv.reset_column),
      "CSV: a column whose non-zero value starts a new sequence")(
      "key-columns", po::value(&csv_keys),
      "CSV: columns carried through to predictions (dates, ids), never read")(
      "missing", po::value(&missing)->default_value(missing),
      "CSV: an empty cell in a used column: error (naming line and column), drop the row, ffill or "
      "interpolate")("normalize", po::value(&c.transform.normalize)->default_value(c.transform.normalize),
                     "CSV: standard, minmax or none, fitted on the training rows and undone on every output")(
      "difference", po::bool_switch(&c.transform.difference),
      "CSV: learn the change from the last value (a prediction is the last value plus the predicted change)")(
      "warmup-rows", po::value(&c.warmup_rows)->default_value(c.warmup_rows),
      "CSV: rows of --val-data and --test-data run but not scored")(
      "format", po::value(&c.format), "csv: read --data as CSV whatever its extension")(
      "delimiter", po::value(&c.delimiter)->default_value(c.delimiter), "CSV: the field separator");
}

void TrainOptions::add_optimizer_options(po::options_description& o) {
  RunConfig& c = config;
  o.add_options()("optimizer", po::value(&c.optimizer.kind)->default_value("adam"),
                  "adam, adamw, sgd or rmsprop")(
      "weight-decay", po::value(&c.optimizer.weight_decay)->default_value(0.0, "0"),
      "L2 on the gradient (sgd, adam, rmsprop) or decoupled decay (adamw), as torch.optim")(
      "nesterov", po::bool_switch(&c.optimizer.nesterov), "sgd: Nesterov momentum")(
      "lr-schedule", po::value(&c.optimizer.schedule)->default_value("constant"),
      "constant, step (--lr-step-every, --lr-gamma), cosine (--warmup, --lr-min, over --max-updates) or "
      "plateau (--patience, --lr-gamma, --lr-min; on the validation loss)")(
      "warmup", po::value(&c.optimizer.warmup)->default_value(0), "cosine: linear warm-up updates")(
      "lr-min", po::value(&c.optimizer.lr_min)->default_value(0.0, "0"),
      "cosine: the final rate; plateau: the lowest rate")(
      "patience", po::value(&c.optimizer.patience)->default_value(c.optimizer.patience),
      "plateau: evaluations without improvement tolerated before the rate is multiplied by --lr-gamma")(
      "lr", po::value(&c.optimizer.lr)->default_value(2e-3, "0.002"), "learning rate")(
      "momentum", po::value(&c.optimizer.momentum)->default_value(0.0, "0"), "sgd momentum (0: plain SGD)")(
      "clip", po::value(&c.clip)->default_value(0.0, "0"),
      "clip the global gradient norm to this (0: no clipping)")(
      "accumulate", po::value(&c.accumulate)->default_value(c.accumulate),
      "windows per update: their gradients summed into one update (gradient accumulation)")(
      "keep-denormals", po::bool_switch(),
      "compute with denormal floats instead of flushing them to zero (slower on many CPUs)")(
      "precision", po::value(&c.precision)->default_value(c.precision),
      "products in f32, or bf16: operands rounded to bfloat16, sums in f32 (CPUs with AVX512_BF16)")(
      "on-nonfinite", po::value(&outputs.on_nonfinite)->default_value(outputs.on_nonfinite),
      "a non-finite loss or gradient: stop (save the last good parameters), or skip the update")(
      "max-skips", po::value(&outputs.max_skips)->default_value(outputs.max_skips),
      "--on-nonfinite skip: consecutive non-finite updates before stopping anyway")(
      "lr-step-every", po::value(&c.optimizer.step_every)->default_value(0),
      "step decay: multiply lr by --lr-gamma every N updates")(
      "lr-gamma", po::value(&c.optimizer.gamma)->default_value(0.5, "0.5"), "step decay factor")(
      "seed", po::value(&c.seed)->default_value(c.seed), "initialisation and task seed")(
      "init", po::value(&files.init), "start from these weights (.safetensors, PyTorch names)");
}

void TrainOptions::add_output_options(po::options_description& o) {
  o.add_options()("save", po::value(&files.save),
                  "directory for model.safetensors and checkpoint.safetensors")(
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
      "plot", po::value(&plot), "at the end, draw the run's curves from --metrics into this PNG")(
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
}

po::options_description TrainOptions::describe(bool help) {
  po::options_description o("rewind train options");
  add_run_options(o, help);
  add_optimizer_options(o);
  add_output_options(o);
  plugins.add_to(o);
  return o;
}

bool given(const po::variables_map& vm, const char* option) {
  return vm.count(option) && !vm[option].defaulted();
}

// --memory-budget as the trainer takes it: checkpointed reads units and percentages itself, adaptive bytes.
std::string budget_option(const std::string& trainer, const std::string& text) {
  if (trainers::parse_budget(text, std::int64_t{1} << 50) <= 0)
    throw std::invalid_argument("--memory-budget must be more than 0 bytes, got '" + text + "'");
  if (trainer == "checkpointed") return text;
  return std::to_string(trainers::parse_bytes(text));
}

// With --resume the stored run defines model, data and hyperparameters: only limits and outputs may be given.
void refuse_run_options_on_resume(const po::variables_map& vm) {
  static const std::set<std::string> allowed = {"resume",
                                                "epochs",
                                                "max-updates",
                                                "time-limit",
                                                "save",
                                                "save-every",
                                                "save-every-seconds",
                                                "keep-checkpoints",
                                                "keep-best",
                                                "early-stop",
                                                "metrics",
                                                "plot",
                                                "eval-every",
                                                "log-every",
                                                "sample-length",
                                                "prime",
                                                "temperature",
                                                "on-nonfinite",
                                                "max-skips",
                                                "no-save",
                                                "plugin",
                                                "plugin-dir",
                                                "memory-budget",
                                                "help"};
  for (const auto& [name, value] : vm)
    if (!value.defaulted() && !allowed.count(name))
      throw std::invalid_argument("--" + name +
                                  " cannot be combined with --resume: the saved run fixes model, data and "
                                  "hyperparameters (with --resume give only limits and outputs: --epochs, "
                                  "--max-updates, --time-limit, --save, --save-every, --save-every-seconds, "
                                  "--keep-checkpoints, --keep-best, --early-stop, --metrics, --plot, "
                                  "--eval-every, --log-every, --on-nonfinite, --max-skips, --no-save, "
                                  "--sample-length, --prime, --temperature, --plugin, --plugin-dir, and "
                                  "--memory-budget for the checkpointed trainer)");
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

// The saved run to continue, its outputs merged with those given, and where it goes on saving.
SavedRun resumed_run(TrainOptions& o, const po::variables_map& vm) {
  refuse_run_options_on_resume(vm);
  SavedRun run = SavedRun::read(o.resume);
  run.config.outputs = resumed_outputs(run.outputs, o.outputs, vm);
  if (vm["eval-every"].defaulted()) o.eval_every = run.config.eval_every;
  run.config.check_data_unchanged();
  // The budget changes how the gradient is computed, not what it is: the checkpointed trainer plans again.
  if (vm.count("memory-budget")) {
    if (run.config.trainer != "checkpointed")
      throw std::invalid_argument(
          "--memory-budget with --resume applies to the checkpointed trainer; this run "
          "uses '" +
          run.config.trainer + "'");
    run.config.trainer_options.erase("segment");
    run.config.trainer_options["memory_budget"] = budget_option(run.config.trainer, o.memory_budget);
  }
  if (o.files.save.empty() && !o.no_save) {
    if (!run.best_copy_of().empty())
      throw std::invalid_argument(
          "--resume " + o.resume + " is the best checkpoint kept by the run saved in '" + run.best_copy_of() +
          "': give --save DIR for the continued run (or --no-save), so that neither is "
          "overwritten");
    o.files.save = o.resume;
  }
  RunOutputs& out = run.config.outputs;
  if (o.no_save) out.save_every = 0, out.save_every_seconds = 0, out.keep_best = false;
  return run;
}

// Options that apply to one kind of data only, refused on another.
void refuse_options_for_other_data(const RunConfig& c, const po::variables_map& vm) {
  if (!c.task.empty() && vm.count("data")) throw std::invalid_argument("give --data or --task, not both");
  if (!c.format.empty() && c.format != "csv")
    throw std::invalid_argument("--format must be csv (other files are read by their content), got '" +
                                c.format + "'");
  const bool csv = c.series();
  const std::string other = c.task.empty() ? "the text file '" + c.data + "'" : "task '" + c.task + "'";
  for (const char* name : {"inputs", "targets", "target-columns", "reset-column", "key-columns", "missing",
                           "normalize", "difference", "warmup-rows", "delimiter"})
    if (given(vm, name) && !csv)
      throw std::invalid_argument(std::string("--") + name +
                                  " applies to CSV data (a .csv file or --format csv), not to " + other);
  for (const char* name : {"tokens", "vocab-size", "token-dtype", "vocab"})
    if (given(vm, name) && (csv || !c.task.empty()))
      throw std::invalid_argument(std::string("--") + name + " applies to text and token files, not to " +
                                  (csv ? "the CSV file '" + c.data + "'" : other));
  for (const char* name : {"val-data", "test-data"})
    if (given(vm, name) && !c.task.empty())
      throw std::invalid_argument(std::string("--") + name + " applies to data files, not to " + other);
  if (given(vm, "val-data") && given(vm, "val-fraction"))
    throw std::invalid_argument("give --val-data or --val-fraction, not both");
}

// A new run's configuration from the options, checked and with its data fingerprinted.
RunConfig new_run_config(TrainOptions& o, const po::variables_map& vm) {
  RunConfig c = o.config;
  c.outputs = o.outputs;
  c.flush_denormals = !vm["keep-denormals"].as<bool>();
  if (!c.outputs.metrics.empty())
    c.outputs.metrics = fs::absolute(c.outputs.metrics).lexically_normal().string();
  if (c.task.empty() && c.data.empty()) c.data = REWIND_DEFAULT_DATA;
  refuse_options_for_other_data(c, vm);
  c.vocabulary.mode = trainers::token_mode(o.token_mode);
  if (!o.vocab_file.empty()) {
    c.vocabulary = read_vocabulary(o.vocab_file);
    if (given(vm, "tokens") && c.vocabulary.mode != trainers::token_mode(o.token_mode))
      throw std::invalid_argument("--tokens " + o.token_mode + " does not match the vocabulary file '" +
                                  o.vocab_file + "' (" + trainers::name_of(c.vocabulary.mode) + ")");
    if (c.token_file() && vm.count("vocab-size") && c.vocab_size != c.vocabulary.size())
      throw std::invalid_argument("--vocab-size " + std::to_string(c.vocab_size) + " differs from the " +
                                  std::to_string(c.vocabulary.size()) + " symbols of '" + o.vocab_file + "'");
    if (c.token_file()) c.vocab_size = c.vocabulary.size();
  }
  if (!c.token_file() && fs::path(c.data).extension() == ".bin")
    std::fprintf(stderr, "note: '%s' is read as text (--tokens %s); a token file needs --token-dtype\n",
                 c.data.c_str(), trainers::name_of(c.vocabulary.mode));
  if (vm.count("vocab-size") && !c.token_file() && c.vocabulary.mode != trainers::TokenMode::words)
    throw std::invalid_argument("--vocab-size applies to --tokens words and to token files (--token-dtype)");
  c.csv.inputs = split_list(o.csv_inputs);
  c.csv.targets = split_list(o.csv_targets);
  c.csv.target_columns = split_list(o.csv_target_columns);
  c.csv.key_columns = split_list(o.csv_keys);
  c.csv.missing = trainers::missing_policy(o.missing);
  c.transform.check();
  c.model_options = o.plugins.option_map();
  if (o.tie_weights) c.model_options["tie_weights"] = "true";
  PluginOptions trainer_map;
  trainer_map.settings = o.trainer_settings;
  c.trainer_options = trainer_map.option_map("--trainer-option");
  for (const auto& [name, value, key] :
       {std::tuple{"k", o.k, "k"}, {"k1", o.k1, "k1"}, {"k2", o.k2, "k2"}, {"segment", o.segment, "segment"}})
    if (vm.count(name)) c.trainer_options[key] = std::to_string(value);
  if (vm.count("memory-budget"))
    c.trainer_options["memory_budget"] = budget_option(c.trainer, o.memory_budget);
  // k sets both k1 and k2: given with either, one of them would be silently overridden.
  if (c.trainer_options.count("k") && (c.trainer_options.count("k1") || c.trainer_options.count("k2")))
    throw std::invalid_argument("give --k (k1 = k2 = K) or --k1/--k2, not both");
  // The schedule's length is fixed when the run starts: a resume with another limit keeps it.
  if (c.optimizer.schedule == "cosine") c.optimizer.total_updates = o.limits.max_updates;
  if (c.optimizer.step_every > 0 && c.optimizer.schedule == "constant") c.optimizer.schedule = "step";
  c.validate();
  c.fingerprint_data();
  return c;
}

// Limits and outputs, for a new run and a resumed one alike.
void check_limits_and_outputs(TrainOptions& o, const RunOutputs& out, const po::variables_map& vm) {
  if ((vm.count("epochs") && o.limits.epochs < 1) || (vm.count("max-updates") && o.limits.max_updates < 1) ||
      (vm.count("time-limit") && !(o.limits.time_limit > 0)))
    throw std::invalid_argument("--epochs, --max-updates and --time-limit must be positive");
  if (!vm.count("time-limit") && !vm.count("max-updates") && !vm.count("epochs")) o.limits.time_limit = 90;
  if (o.eval_every < 0) throw std::invalid_argument("--eval-every must be >= 0 (0: only at the end)");
  if (vm.count("log-every") && out.log_every < 1) throw std::invalid_argument("--log-every must be >= 1");
  if (o.sample_length < 0) throw std::invalid_argument("--sample-length must be >= 0 (0: no sample)");
  if (!(o.temperature > 0)) throw std::invalid_argument("--temperature must be > 0");
  if (vm.count("early-stop") && out.early_stop < 1) throw std::invalid_argument("--early-stop must be >= 1");
  out.validate(!o.files.save.empty());
  if (!o.plot.empty() && out.metrics.empty())
    throw std::invalid_argument("--plot draws from the run's metrics: give --metrics FILE too");
  if (!o.plot.empty() && !have_gnuplot())
    throw std::runtime_error("--plot: gnuplot is not installed (apt-get install gnuplot-nox)");
}

// How an evaluation of token data reads: perplexity for any tokens, bits per character for characters.
struct Scores {
  bool perplexity = false, bits = false;
};

void print_evaluation(const std::string& label, const Score& score, Scores scores) {
  const trainers::Evaluation& e = score.model;
  if (e.count == 0) return;
  if (!score.columns.empty()) {
    std::printf("%s: %s\n", label.c_str(), describe_errors(score).c_str());
    return;
  }
  std::printf("%s: loss %.4f", label.c_str(), e.loss);
  if (scores.bits) std::printf(", %.3f bits per character", e.loss / std::log(2.0));
  if (scores.perplexity) std::printf(", perplexity %.2f", std::exp(e.loss));
  if (e.correct > 0 || scores.perplexity)
    std::printf(", accuracy %.3f", static_cast<double>(e.correct) / static_cast<double>(e.count));
  std::printf("\n");
}

// Progress lines: rewritten in place on a terminal, otherwise one at the metrics' rate (--log-every).
class Progress {
 public:
  Progress(const Training& run, bool tokens, const Limits& limits)
      : run_(run),
        tokens_(tokens),
        limits_(limits),
        start_(run.updates()),
        tty_(::isatty(STDOUT_FILENO) != 0),
        started_(std::chrono::steady_clock::now()) {}

  void update(const trainers::UpdateReport& r, bool logged, double rate) {
    smoothed_ = std::isnan(smoothed_) ? r.stats.loss : 0.95 * smoothed_ + 0.05 * r.stats.loss;
    skipped_ += r.skipped_nonfinite;
    correct_ += r.stats.correct, count_ += r.stats.loss_count;
    const std::int64_t done = r.update - start_;
    if (!(tty_ ? r.seconds - last_print_ >= 0.25 : logged || done == 1)) return;
    double eta = -1;
    if (limits_.max_updates > 0)
      eta = r.seconds / static_cast<double>(done) * static_cast<double>(limits_.max_updates - r.update);
    if (limits_.time_limit > 0)
      eta = eta < 0 ? limits_.time_limit - r.seconds : std::min(eta, limits_.time_limit - r.seconds);
    last_print_ = r.seconds;
    char accuracy[32] = "", window[48] = "";
    if (tokens_ && count_ > 0)
      std::snprintf(accuracy, sizeof accuracy, "  acc %.3f",
                    static_cast<double>(correct_) / static_cast<double>(count_));
    if (r.stats.k2 > 0)
      std::snprintf(window, sizeof window, "  k %lld/%lld", static_cast<long long>(r.stats.k1),
                    static_cast<long long>(r.stats.k2));
    std::printf(
        "%supdate %6lld  pass %3lld  loss %.4f (smoothed %.4f)%s%s  lr %.3g  %7.0f steps x batch/s  tape "
        "%6.1f MiB  ETA %s%s",
        tty_ ? "\r" : "", static_cast<long long>(r.update), static_cast<long long>(r.pass), r.stats.loss,
        smoothed_, accuracy, window, r.lr, rate, static_cast<double>(r.stats.tape.peak_bytes) / (1 << 20),
        eta >= 0 ? duration(eta).c_str() : "?", tty_ ? "   " : "\n");
    in_line_ = tty_;
    correct_ = count_ = 0;
    std::fflush(stdout);
  }
  // Ends a progress line rewritten in place, before other output.
  void end_line() {
    if (in_line_) std::printf("\n");
    in_line_ = false;
  }
  void summary(double rate) const {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    std::printf("trained %lld updates (to update %lld) in %.*f s, %.0f time steps x batch per second\n",
                static_cast<long long>(run_.updates() - start_), static_cast<long long>(run_.updates()),
                seconds < 10 ? 3 : 1, seconds, rate);  // short runs to the millisecond
    if (skipped_ > 0) std::printf("skipped %lld non-finite update(s)\n", static_cast<long long>(skipped_));
  }

 private:
  const Training& run_;
  bool tokens_;
  Limits limits_;
  std::int64_t start_;
  bool tty_;
  std::chrono::steady_clock::time_point started_;
  double smoothed_ = NAN, last_print_ = -1;
  std::int64_t correct_ = 0, count_ = 0, skipped_ = 0;
  bool in_line_ = false;
};

void print_first_lines(Training& run, const TrainOptions& o, const po::variables_map& vm) {
  const RunConfig& c = run.config();
  for (const std::string& note : run.notes()) std::printf("%s\n", note.c_str());
  const bool text = c.task.empty() && !c.series();
  if (text && (c.token_file() || c.vocabulary.mode != trainers::TokenMode::bytes))
    std::printf("tokens: %s, vocabulary of %lld\n",
                c.token_file() ? (c.token_dtype + " ids").c_str() : trainers::name_of(c.vocabulary.mode),
                static_cast<long long>(c.token_count()));
  if (!o.resume.empty())
    std::printf("resumed %s at update %lld (pass %lld)\n", o.resume.c_str(),
                static_cast<long long>(run.updates()), static_cast<long long>(run.pass()));
  std::printf(
      "rewind train: model %s (hidden %lld, %d layer(s), %zu parameter tensors), trainer %s, %s, batch "
      "%lld\n",
      c.model.c_str(), static_cast<long long>(c.hidden), c.layers, run.model().parameters().size(),
      c.trainer.c_str(), c.task.empty() ? ("data " + c.data).c_str() : ("task " + c.task).c_str(),
      static_cast<long long>(c.batch));
  if (World::distributed()) {
    const auto streams = [](const trainers::Dataset* d, const char* what) {
      return d ? std::string(", ") + what + " " + std::to_string(d->batch()) + " streams on rank 0"
               : std::string();
    };
    std::printf("MPI: %d ranks, %lld streams each%s%s, %s threads per rank\n", World::size(),
                static_cast<long long>(c.batch / World::size()),
                streams(run.validation(), "validation").c_str(), streams(run.test(), "test").c_str(),
                std::getenv("REWIND_NUM_THREADS") ? std::getenv("REWIND_NUM_THREADS") : "all");
  }
  if (!o.resume.empty()) std::printf("%s\n", describe_outputs(c.outputs, o.files.save, vm).c_str());
  const Limits& l = o.limits;
  std::printf("limits:%s%s%s\n",
              l.max_updates ? (" " + std::to_string(l.max_updates) + " updates").c_str() : "",
              l.epochs ? (" " + std::to_string(l.epochs) + " passes").c_str() : "",
              l.time_limit > 0 ? (" " + duration(l.time_limit)).c_str() : "");
  std::fflush(stdout);
}

void print_end(Training& run, const TrainOptions& o, bool stopped) {
  if (interrupted) std::printf("interrupted at update %lld\n", static_cast<long long>(run.updates()));
  if (stopped)
    std::printf(
        "early stop at update %lld: %lld validation runs without improvement (best loss %.4f at update "
        "%lld%s)\n",
        static_cast<long long>(run.updates()), static_cast<long long>(run.evaluations_since_best()),
        run.best_loss(), static_cast<long long>(run.best_update()),
        run.outputs().keep_best ? (", kept in " + (fs::path(o.files.save) / "best").string()).c_str() : "");
}

void print_mpi_traffic() {
  if (!World::distributed()) return;
  const World::Traffic t = World::traffic();
  const double per = static_cast<double>(std::max<std::int64_t>(t.exchanges, 1));
  std::printf(
      "MPI gradient exchange: %lld updates, %.0f bytes sent per update and rank, %.3f ms per update "
      "(ring allreduce and waiting for the slower ranks, rank 0)\n",
      static_cast<long long>(t.exchanges), static_cast<double>(t.bytes) / per, 1e3 * t.seconds / per);
}

// The prime's symbols the vocabulary knows (or its first symbol), then sample_length sampled ones.
void print_sample(Training& run, const TrainOptions& o) {
  const RunConfig& c = run.config();
  if (o.sample_length == 0 || !c.task.empty() || c.series() || c.vocabulary.symbols.empty()) return;
  std::vector<std::int32_t> ids =
      c.vocabulary.encode(o.prime, "--prime", {.skip_unknown = true, .final_eos = false});
  if (ids.empty()) ids = {0};
  std::mt19937_64 rng(c.seed);
  const std::vector<std::int32_t> primed = ids;
  std::ranges::copy(trainers::sample(run.model(), primed, o.sample_length, o.temperature, rng),
                    std::back_inserter(ids));
  std::printf("\nsample (temperature %.2f):\n%s\n", o.temperature, c.vocabulary.decode(ids).c_str());
}

}  // namespace

int run_train(int argc, const char* const* argv) {
  TrainOptions o;
  const bool help = std::any_of(argv, argv + argc, [](const char* a) {
    return std::string_view(a) == "--help" || std::string_view(a) == "-h";
  });
  const po::options_description options = o.describe(help);
  po::variables_map vm;
  if (!parse_command_line(
          argc, argv, options, vm,
          "usage: rewind train [options]   (no options: an LSTM on the bundled text, truncated BPTT, 90 s)"))
    return 0;
  if (World::rank() != 0) {  // rank 0 speaks and writes for all
    o.plot.clear(), o.sample_length = 0;
    if (!std::freopen("/dev/null", "w", stdout)) throw std::runtime_error("cannot silence rank output");
  }
  if (o.no_save && (o.resume.empty() || !o.files.save.empty()))
    throw std::invalid_argument(
        "--no-save applies to --resume without --save (a new run saves only with --save)");
  std::optional<SavedRun> saved;
  if (!o.resume.empty()) saved = resumed_run(o, vm);
  RunConfig config = saved ? saved->config : new_run_config(o, vm);
  config.eval_every = o.eval_every;
  check_limits_and_outputs(o, config.outputs, vm);

  plugins::Registry registry = o.plugins.load();
  Training run(std::move(config), registry, o.files, o.limits, saved ? &*saved : nullptr);
  const bool text = run.config().task.empty() && !run.config().series();
  const Scores scores{.perplexity = text,
                      .bits = text && run.config().vocabulary.mode != trainers::TokenMode::words &&
                              !run.config().vocabulary.symbols.empty()};
  print_first_lines(run, o, vm);

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  Progress progress(run, run.tokens(), o.limits);
  const TrainingEvents events{
      .update = [&](const trainers::UpdateReport& r,
                    bool logged) { progress.update(r, logged, run.metrics().rate()); },
      .evaluation =
          [&](const std::string& label, const Score& score) {
            progress.end_line();
            print_evaluation(label, score, scores);
          },
      .note =
          [&](const std::string& note) {
            progress.end_line();
            std::printf("%s\n", note.c_str());
          },
      .warning =
          [&](const std::string& warning) {
            progress.end_line();
            std::fprintf(stderr, "%s\n", warning.c_str());
          },
      .stop = [] { return interrupted.load(); }};
  try {
    run.train(events);
  } catch (const trainers::NonFiniteError&) {
    progress.end_line();
    throw;
  }
  progress.end_line();
  print_end(run, o, run.stopped_early());
  progress.summary(run.metrics().rate());
  print_mpi_traffic();
  run.finish(events, interrupted);
  if (!o.files.save.empty())
    std::printf("saved %s (model.safetensors, checkpoint.safetensors) at update %lld\n", o.files.save.c_str(),
                static_cast<long long>(run.updates()));
  if (!o.plot.empty()) plot_runs({run.outputs().metrics}, o.plot);
  print_sample(run, o);
  return 0;
}

}  // namespace rwd::cli
