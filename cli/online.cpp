// rewind online: learning on a live stream. Each CSV row (or each token of a line of text, for a token model)
// is read as it arrives (standard input, a named pipe, a file that grows, a TCP client), the prediction of
// the next row is written and flushed, then the row is learnt from (runtime::OnlineLearner: truncated
// BPTT(k1, k2) on a ring of the last rows). Reports prequential errors and latencies; saves atomically every
// N rows or S seconds, at the end and on SIGINT/SIGTERM. docs/online.md.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <boost/program_options.hpp>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "commands.hpp"
#include "parse.hpp"
#include "plugin_options.hpp"
#include "rewind/runtime/online.hpp"
#include "rewind/runtime/stream.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace rwd::cli {
using namespace rwd::runtime;

namespace {

std::atomic<bool> stop_requested{false};
extern "C" void on_stop_signal(int signal) {
  stop_requested = true;
  std::signal(signal, SIG_DFL);  // a second signal kills as usual
}

struct OnlineCommand {
  // Where rows come from and go.
  std::string data, listen_address = "127.0.0.1", out, bad_rows = "stop";
  int listen = -1;  // -1: not listening; 0: a port the system chooses
  bool follow = false;
  std::size_t max_line = LineSource::default_max_line;
  // The model: a trained one, a saved online run, or a new one of these options.
  std::string checkpoint, resume, vocab;
  RunConfig config;
  std::string inputs, targets, keys;
  PluginOptions plugins;
  OnlineOptions online;
  std::string save, metrics;
  std::int64_t save_every_rows = 0, report_every = 10000;
  double save_every_seconds = 0;

  po::options_description describe();
  void check(const po::variables_map& vm);
  // header(): the stream's header line, read when a new model of CSV rows needs its columns.
  OnlineLearner learner(const po::variables_map& vm, const std::function<std::string()>& header);
};

po::options_description OnlineCommand::describe() {
  po::options_description o("rewind online options");
  RunConfig& c = config;
  c.hidden = 32, c.batch = 1, c.transform.normalize = "none", c.optimizer.lr = 2e-3;
  o.add_options()("help,h", "show this help")(
      "data", po::value(&data),
      "CSV rows with a header line (or text, for a token model): '-' (standard input), a named pipe or a "
      "file")("follow", po::bool_switch(&follow), "at the end of a file, wait for more rows (tail -f)")(
      "listen", po::value(&listen), "read rows from TCP clients on this port, one at a time")(
      "listen-address", po::value(&listen_address)->default_value(listen_address),
      "the interface --listen binds (another than 127.0.0.1 accepts other machines)")(
      "max-line", po::value(&max_line)->default_value(max_line), "bytes: a longer row is refused")(
      "bad-rows", po::value(&bad_rows)->default_value(bad_rows),
      "a malformed row: stop (after saving) or skip it (counted and reported)")(
      "out", po::value(&out), "predictions (CSV, one line per row, flushed) to this file (default: stdout)");
  o.add_options()("checkpoint", po::value(&checkpoint),
                  "start from this trained run (its columns, transforms and optimizer settings)")(
      "resume", po::value(&resume), "continue the online run saved in this directory exactly")(
      "model", po::value(&c.model)->default_value(c.model), "without --checkpoint: a new model plugin")(
      "hidden", po::value(&c.hidden)->default_value(c.hidden), "new model: hidden size")(
      "layers", po::value(&c.layers)->default_value(c.layers), "new model: stacked layers")(
      "seed", po::value(&c.seed)->default_value(c.seed), "new model: initialisation seed")(
      "inputs", po::value(&inputs), "new model: input columns (default: all but keys and reset)")(
      "targets", po::value(&targets), "new model: columns predicted at the next row (default: the inputs)")(
      "key-columns", po::value(&keys), "columns carried through to the predictions, never read")(
      "reset-column", po::value(&c.csv.reset_column), "a column whose non-zero value starts a new sequence")(
      "difference", po::bool_switch(&c.transform.difference),
      "new model: learn the change from the last row")(
      "delimiter", po::value(&c.delimiter)->default_value(c.delimiter), "the field separator")(
      "vocab", po::value(&vocab),
      "a new model of tokens: the vocabulary file of rewind tokenize; each line read is text, its tokens "
      "then a newline");
  o.add_options()(
      "trainer", po::value(&c.trainer)->default_value(c.trainer),
      "truncated: the trainer that learns online (full, checkpointed, adaptive and artbp need the "
      "whole sequence)")("k1", po::value(&online.k1),
                         "rows between updates (default: the checkpoint run's k1, else 20)")(
      "k2", po::value(&online.k2), "rows each update backpropagates through, >= k1 (default k1)")(
      "no-learn", po::bool_switch(),
      "predict only: the model stays as it is (with --resume: frozen from there)")(
      "optimizer", po::value(&c.optimizer.kind)->default_value(c.optimizer.kind),
      "new model: adam, sgd, ...")(
      "lr", po::value(&c.optimizer.lr)->default_value(c.optimizer.lr, shortest(c.optimizer.lr)),
      "learning rate (default: a checkpoint's own)")("clip", po::value(&online.clip)->default_value(0.0, "0"),
                                                     "clip the gradient norm (0: no clipping)");
  o.add_options()("save", po::value(&save),
                  "save the online run here (online.safetensors, model.safetensors)")(
      "save-every-rows", po::value(&save_every_rows), "also save every N rows")(
      "save-every-seconds", po::value(&save_every_seconds), "also save every S seconds")(
      "metrics", po::value(&metrics), "append a JSON line per report to this file (rewind plot draws it)")(
      "report-every", po::value(&report_every)->default_value(report_every),
      "rows per report: prequential errors, loss, rows/s and latencies");
  plugins.add_to(o);
  return o;
}

void OnlineCommand::check(const po::variables_map& vm) {
  if (data.empty() == (listen < 0))
    throw std::invalid_argument("give --data (a file, a named pipe or '-') or --listen PORT, one of them");
  if (!checkpoint.empty() && !resume.empty())
    throw std::invalid_argument("give --checkpoint (a trained run) or --resume (an online run), not both");
  if (bad_rows != "stop" && bad_rows != "skip") throw std::invalid_argument("--bad-rows: stop or skip");
  if (report_every < 1 || save_every_rows < 0 || save_every_seconds < 0 || max_line < 2)
    throw std::invalid_argument("--report-every and --max-line must be >= 1, --save-every-* >= 0");
  if ((save_every_rows > 0 || save_every_seconds > 0) && save.empty() && resume.empty())
    throw std::invalid_argument("--save-every-rows and --save-every-seconds need --save DIR");
  // The trained run's files are its own: an online save beside them would replace its model.safetensors.
  std::error_code same;
  if (!checkpoint.empty() && !save.empty() && fs::equivalent(checkpoint, save, same))
    throw std::invalid_argument("--save '" + save +
                                "' is the --checkpoint run's directory: the online model "
                                "would replace the trained one; save into another directory");
  if (config.trainer != "truncated")
    throw std::invalid_argument("trainer '" + config.trainer +
                                "' cannot learn online: it needs the whole sequence before an update (rewind "
                                "online learns with truncated BPTT(k1, k2))");
  online.learn = !vm["no-learn"].as<bool>();
  const auto given = [&](const char* name) { return vm.count(name) && !vm[name].defaulted(); };
  for (const char* name :
       {"model", "hidden", "layers", "seed", "inputs", "targets", "difference", "optimizer", "vocab"})
    if (given(name) && (!checkpoint.empty() || !resume.empty()))
      throw std::invalid_argument(std::string("--") + name + " describes a new model: the " +
                                  (resume.empty() ? "checkpoint" : "saved online run") + " fixes it");
  if (!vocab.empty())
    for (const char* name : {"inputs", "targets", "key-columns", "reset-column", "difference", "delimiter"})
      if (given(name))
        throw std::invalid_argument(std::string("--") + name + " applies to CSV rows, not to the text a " +
                                    "token model (--vocab) reads");
  // A resumed run goes on exactly as it was: what it learns with is stored.
  for (const char* name : {"k1", "k2", "lr", "clip", "key-columns", "reset-column", "option"})
    if (given(name) && !resume.empty())
      throw std::invalid_argument(std::string("--") + name +
                                  " cannot be combined with --resume: the saved online run fixes it");
}

// k1 and k2: as given, else as the trained run's truncated trainer had them, else TBPTT(20).
void choose_window(OnlineOptions& online, const po::variables_map& vm, const RunConfig* trained) {
  const auto stored = [&](const char* key) -> std::int64_t {
    if (!trained || trained->trainer != "truncated" || !trained->trainer_options.count(key)) return 0;
    return parse_integer(trained->trainer_options.at(key), std::string("the checkpoint's ") + key);
  };
  const std::int64_t k = stored("k") > 0 ? stored("k") : 20;
  if (!vm.count("k1")) online.k1 = stored("k1") > 0 ? stored("k1") : k;
  if (!vm.count("k2")) online.k2 = stored("k2") > 0 ? stored("k2") : vm.count("k1") ? online.k1 : k;
}

OnlineLearner OnlineCommand::learner(const po::variables_map& vm,
                                     const std::function<std::string()>& header) {
  const PluginSearch search{plugins.files, plugins.directories};
  if (!resume.empty()) {
    OnlineLearner resumed = OnlineLearner::resume(resume, search);
    if (!online.learn) resumed.freeze();
    return resumed;
  }
  if (!checkpoint.empty()) {
    Predictor predictor(checkpoint, search);
    const RunConfig& trained = predictor.config();
    // The trained run's optimizer at a constant rate: a schedule counted in training updates has no meaning
    // on a stream without an end.
    trainers::OptimizerConfig optimizer = trained.optimizer;
    optimizer.schedule = "constant", optimizer.step_every = 0;
    if (!vm["lr"].defaulted()) optimizer.lr = config.optimizer.lr;
    choose_window(online, vm, &trained);
    OnlineLearner learner(std::move(predictor), online, optimizer);
    // The training run's optimizer goes on where it stopped, when its checkpoint is there.
    const fs::path run_checkpoint = fs::path(checkpoint) / "checkpoint.safetensors";
    if (fs::is_directory(checkpoint) && fs::exists(run_checkpoint))
      learner.continue_optimizer(run_checkpoint);
    return learner;
  }
  RunConfig& c = config;
  c.data = data.empty() ? "tcp:" + listen_address + ":" + std::to_string(listen) : data;
  if (!vocab.empty()) {  // a new model of tokens, read through the vocabulary of a rewind tokenize
    c.vocabulary = read_vocabulary(vocab);
    c.model_options = plugins.option_map();
    c.validate();
    choose_window(online, vm, nullptr);
    return OnlineLearner(Predictor(c, {}, {}, search), online, c.optimizer);
  }
  // A new model: the columns from the stream's header, as rewind train resolves them from a file's.
  c.format = "csv";
  c.csv.inputs = split_list(inputs), c.csv.targets = split_list(targets),
  c.csv.key_columns = split_list(keys);
  c.model_options = plugins.option_map();
  c.validate();
  std::istringstream text(header() + "\n");
  const trainers::CsvTable table = trainers::CsvTable::parse(text, "the stream's header", c.delimiter[0]);
  const trainers::SeriesFrame frame = trainers::series_frame(table, c.csv);
  // Nothing to fit a scale on before the first row: the model reads the data's own units (or their changes).
  for (const auto* names : {&frame.input_names, &frame.target_names})
    for (const std::string& name : *names) c.transform.columns[name] = ColumnScale{};
  choose_window(online, vm, nullptr);
  return OnlineLearner(Predictor(c, frame.input_names, frame.target_names, search), online, c.optimizer);
}

// Predictions as rewind predict writes them (keys, row, origin, step, then each target's actual value, empty:
// not known yet, and its prediction), one flushed line per row, formatted without allocating.
class PredictionWriter {
 public:
  PredictionWriter(const std::string& path, const std::string& header)
      : fd_(path.empty() ? STDOUT_FILENO
                         : ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)),
        own_(!path.empty()),
        path_(path) {
    if (fd_ < 0) throw std::runtime_error("--out: cannot write '" + path + "': " + std::strerror(errno));
    line_.reserve(4096);
    write(header + '\n');
  }
  static std::string series_header(const std::vector<std::string>& keys,
                                   const std::vector<std::string>& targets) {
    std::string header;
    for (const std::string& k : keys) header += csv_cell(k) + ',';
    header += "row,origin,step";
    for (const std::string& t : targets) header += ',' + csv_cell(t) + ',' + csv_cell(t + "_predicted");
    return header;
  }
  // As rewind predict --top-k 1 writes a token model's, without the next token (not read yet).
  static constexpr const char* token_header = "position,token,top1,p1";
  ~PredictionWriter() {
    if (own_) ::close(fd_);
  }
  PredictionWriter(const PredictionWriter&) = delete;
  PredictionWriter& operator=(const PredictionWriter&) = delete;

  // The prediction for row `row` + 1, made after reading row `row`.
  void row(std::int64_t row, const std::vector<std::string>& keys, std::span<const double> predicted) {
    line_.clear();
    for (const std::string& k : keys)
      line_ += k.find_first_of(",\"\r\n") == std::string::npos ? k : csv_cell(k), line_ += ',';
    number(row + 1), line_ += ',', number(row), line_ += ",1";
    for (double p : predicted) line_ += ",,", number(p);
    line_ += '\n';
    write(line_);
  }
  // The most probable token after token `position` (cells: CSV cells of the symbols).
  void token(std::int64_t position, const std::string& token_cell, const std::string& top_cell, double p) {
    line_.clear();
    number(position), line_ += ',', line_ += token_cell, line_ += ',', line_ += top_cell, line_ += ',';
    number(p);
    line_ += '\n';
    write(line_);
  }

 private:
  template <typename T>
  void number(T value) {
    char buf[32];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);  // shortest round-trip
    line_.append(buf, end);
  }
  void write(const std::string& text) {
    // One write(2) per line, no stdio buffer: the line is out (flushed) when the call returns.
    for (std::size_t done = 0; done < text.size();) {
      const ssize_t n = ::write(fd_, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        throw std::runtime_error("cannot write the predictions to " +
                                 (own_ ? "'" + path_ + "'" : std::string("standard output")) + ": " +
                                 std::strerror(errno));
      done += static_cast<std::size_t>(n);
    }
  }
  int fd_;
  bool own_;
  std::string path_, line_;
};

std::string latency_text(const Latency& l) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "p50 %.1f us, p99 %.1f us, max %.1f us", l.p50, l.p99, l.max);
  return buf;
}

nlohmann::json latency_json(const Latency& l) {
  return {{"p50", l.p50}, {"p99", l.p99}, {"max", l.max}, {"count", l.count}};
}

// Resident memory (bytes), for the report: a stream's memory must stay flat however long it runs.
double resident_bytes() {
  long pages = 0, resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

// The interval's report: a line on stderr and, with --metrics, a JSON line.
void report(const PrequentialScore::Interval& i, std::int64_t rows, std::int64_t updates,
            std::int64_t bad_rows, double seconds, double interval_seconds, std::ofstream* metrics) {
  const double rate = interval_seconds > 0 ? static_cast<double>(i.rows) / interval_seconds : 0;
  std::string errors;
  for (const ColumnErrors& c : i.columns) {
    char buf[160];
    std::snprintf(buf, sizeof buf, ", %s RMSE %.4g MAE %.4g", c.column.c_str(), c.rmse, c.mae);
    errors += buf;
  }
  if (i.tokens.count > 0) {
    char buf[160];
    std::snprintf(buf, sizeof buf, ", log loss %.4g nats (%.4g bits), accuracy %.4g", i.tokens.log_loss,
                  i.tokens.log_loss / std::log(2.0), i.tokens.accuracy);
    errors += buf;
  }
  char loss[32] = "no updates";
  if (i.updates > 0) std::snprintf(loss, sizeof loss, "loss %.4g", i.mean_loss);
  std::fprintf(stderr, "row %lld: %.0f rows/s, %s%s; predict %s; learn %s (%lld updates)\n",
               static_cast<long long>(rows), rate, loss, errors.c_str(), latency_text(i.predict).c_str(),
               latency_text(i.learn).c_str(), static_cast<long long>(i.updates));
  if (!metrics) return;
  nlohmann::json columns = nlohmann::json::object();
  for (const ColumnErrors& c : i.columns)
    columns[c.column] = {{"rmse", c.rmse}, {"mae", c.mae}, {"count", c.count}};
  nlohmann::json line = {{"row", rows},
                         {"seconds", seconds},
                         {"rows_per_second", rate},
                         {"updates", updates},
                         {"loss", i.updates > 0 ? nlohmann::json(i.mean_loss) : nlohmann::json()},
                         {"columns", columns},
                         {"predict_us", latency_json(i.predict)},
                         {"learn_us", latency_json(i.learn)},
                         {"bad_rows", bad_rows},
                         {"resident_bytes", resident_bytes()}};
  if (i.tokens.count > 0)
    line["tokens"] = {
        {"log_loss", i.tokens.log_loss}, {"accuracy", i.tokens.accuracy}, {"count", i.tokens.count}};
  *metrics << line.dump() << '\n' << std::flush;
}

// One stream, row after row (or token after token), until it ends, a signal or a row that stops it.
class OnlineRun {
  using clock = std::chrono::steady_clock;

 public:
  OnlineRun(OnlineCommand& command, const po::variables_map& vm) : c_(command) {
    source_ = c_.listen >= 0 ? listen_lines(c_.listen_address, c_.listen, source_options())
                             : open_lines(c_.data, source_options());
    if (c_.listen >= 0) std::fprintf(stderr, "listening on %s\n", source_->name().c_str());
    learner_.emplace(c_.learner(vm, [this] { return header(); }));
    save_dir_ = c_.save.empty() ? c_.resume : c_.save;
    if (!c_.metrics.empty()) {
      metrics_.emplace(c_.metrics, std::ios::app);
      if (!*metrics_) throw std::runtime_error("--metrics: cannot write '" + c_.metrics + "'");
    }
    const Predictor& predictor = learner_->predictor();
    score_.emplace(predictor.targets(), c_.report_every);
    if (!predictor.series()) {
      const trainers::Vocabulary& vocabulary = predictor.config().vocabulary;
      if (vocabulary.symbols.empty())
        throw std::invalid_argument("'" + predictor.file() +
                                    "' was trained on token ids without a vocabulary: it cannot read text");
      encoder_.emplace(vocabulary);
      for (const std::string& symbol : vocabulary.symbols)
        symbol_cells_.push_back(csv_cell(printable(symbol)));
      writer_.emplace(c_.out, PredictionWriter::token_header);
      previous_.resize(symbol_cells_.size());
      return;
    }
    const RunConfig& run = predictor.config();
    key_columns_ = c_.keys.empty() ? run.csv.key_columns : split_list(c_.keys);
    reset_column_ = vm.count("reset-column") ? c_.config.csv.reset_column : run.csv.reset_column;
    parser_.emplace(header(), predictor.inputs(), predictor.targets(), key_columns_, reset_column_,
                    run.delimiter[0]);
    writer_.emplace(c_.out, PredictionWriter::series_header(key_columns_, predictor.targets()));
    previous_.resize(predictor.targets().size());
  }

  void describe() const {
    const OnlineLearner& l = *learner_;
    const OnlineOptions& o = l.options();
    std::fprintf(
        stderr, "rewind online: %s from %s, %s; %s\n", learner_->predictor().file().c_str(),
        source_->name().c_str(),
        o.learn ? ("truncated BPTT(k1 " + std::to_string(o.k1) + ", k2 " + std::to_string(o.k2) + ")").c_str()
                : "predicting only",
        l.counts().rows > 0 ? ("resumed at row " + std::to_string(l.counts().rows)).c_str() : "from row 0");
  }

  // Returns the exit code; throws on a row that stops the run (after saving).
  int run() {
    started_ = last_report_ = last_save_ = clock::now();
    have_previous_ = learner_->predictor().snapshot().started;
    while (!stop_requested) {
      std::optional<std::string_view> line;
      try {
        line = source_->next();
      } catch (const std::length_error& e) {
        bad_row(source_->name() + " " + e.what());
        continue;
      }
      if (!line) break;
      if (encoder_) {  // text: a new client continues it
        text(*line);
        continue;
      }
      if (source_->restarted()) {  // a new client: its header, then rows continuing the stream
        parser_.emplace(*line, learner_->predictor().inputs(), learner_->predictor().targets(), key_columns_,
                        reset_column_, learner_->predictor().config().delimiter[0]);
        continue;
      }
      if (line->find_first_not_of(" \t\r") != std::string_view::npos) row(*line);
    }
    const bool ended = !stop_requested;
    const auto now = clock::now();
    const PrequentialScore::Interval last = score_->take();
    if (last.rows > 0)
      report(last, learner_->counts().rows, learner_->counts().updates, bad_rows_, seconds(started_, now),
             seconds(last_report_, now), metrics_ ? &*metrics_ : nullptr);
    save();
    summary(ended ? "the stream ended" : "stopped by a signal");
    return 0;
  }

  // Saves what was learnt so far (if anywhere): before any error stops the run.
  void save() {
    if (save_dir_.empty()) return;
    learner_->save(save_dir_);
    saved_rows_ = learner_->counts().rows;
  }
  bool has_learner() const { return learner_.has_value(); }

 private:
  static double seconds(clock::time_point a, clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  }
  SourceOptions source_options() const {
    return {.follow = c_.follow, .max_line = c_.max_line, .stop = &stop_requested};
  }
  std::string header() {
    if (!header_) {
      const std::optional<std::string_view> line = source_->next();
      if (!line) throw std::runtime_error(source_->name() + " ended before its header line");
      header_ = std::string(*line);
    }
    return *header_;
  }

  // A CSV row: predicted, written, learnt from.
  void row(std::string_view line) {
    const auto t0 = clock::now();
    try {
      parser_->parse(line, source_->line(), parsed_);
    } catch (const std::invalid_argument& e) {
      bad_row(source_->name() + " " + e.what() + " (row " + std::to_string(learner_->counts().rows) + ")");
      return;
    }
    if (have_previous_ && !parsed_.starts_sequence) score_->score(previous_, parsed_.targets);
    const std::span<const double> predicted =
        learner_->observe(parsed_.inputs, parsed_.targets, parsed_.starts_sequence);
    std::ranges::copy(predicted, previous_.begin());
    have_previous_ = true;
    writer_->row(learner_->counts().rows - 1, parsed_.keys, predicted);
    learn(t0);
  }

  // A line of text: its tokens and a newline (words: <eos>), each predicted, written, learnt from.
  void text(std::string_view line) {
    text_.assign(line);
    text_ += '\n';
    ids_.clear();
    try {
      encoder_->encode(text_, source_->name() + " line " + std::to_string(source_->line()), {}, ids_);
    } catch (const std::invalid_argument& e) {
      bad_row(std::string(e.what()) + " (token " + std::to_string(learner_->counts().rows) + ")");
      return;
    }
    for (const std::int32_t id : ids_) {
      const auto t0 = clock::now();
      if (have_previous_) score_->score_token(previous_, id);
      const std::span<const double> predicted = learner_->observe_token(id);
      std::ranges::copy(predicted, previous_.begin());
      have_previous_ = true;
      const auto top = static_cast<std::size_t>(std::ranges::max_element(predicted) - predicted.begin());
      writer_->token(learner_->counts().rows - 1, symbol_cells_[static_cast<std::size_t>(id)],
                     symbol_cells_[top], predicted[top]);
      learn(t0);
    }
  }

  // The update due after a row or token read at t0, then its timing, the report and the save when due.
  void learn(clock::time_point t0) {
    const auto t1 = clock::now();
    const bool learned = learner_->learn();
    const auto t2 = learned ? clock::now() : t1;  // a row without an update: no learning time to read
    score_->time(seconds(t0, t1), seconds(t1, t2), learned, learner_->counts().last_loss);
    if (score_->interval_full()) {
      report(score_->take(), learner_->counts().rows, learner_->counts().updates, bad_rows_,
             seconds(started_, t2), seconds(last_report_, t2), metrics_ ? &*metrics_ : nullptr);
      last_report_ = t2;
    }
    const bool rows_due = c_.save_every_rows > 0 && learner_->counts().rows % c_.save_every_rows == 0;
    if (rows_due || (c_.save_every_seconds > 0 && seconds(last_save_, t2) >= c_.save_every_seconds)) {
      save();
      last_save_ = clock::now();
    }
  }

  void bad_row(const std::string& what) {
    if (c_.bad_rows != "skip") throw std::invalid_argument(what + " (--bad-rows skip skips such rows)");
    if (bad_rows_++ < 10) std::fprintf(stderr, "skipped %s\n", what.c_str());
  }
  void summary(const char* why) const {
    const OnlineCounts& n = learner_->counts();
    std::string errors;
    for (const ColumnErrors& c : score_->total()) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "; %s prequential RMSE %.6g, MAE %.6g over %lld rows", c.column.c_str(),
                    c.rmse, c.mae, static_cast<long long>(c.count));
      errors += buf;
    }
    if (const PrequentialScore::TokenScores t = score_->total_tokens(); t.count > 0) {
      char buf[160];
      std::snprintf(buf, sizeof buf,
                    "; prequential log loss %.6g nats (%.6g bits), accuracy %.6g over %lld tokens",
                    t.log_loss, t.log_loss / std::log(2.0), t.accuracy, static_cast<long long>(t.count));
      errors += buf;
    }
    std::fprintf(stderr,
                 "%s at row %lld: %lld updates (%lld non-finite skipped), %lld malformed rows skipped%s\n",
                 why, static_cast<long long>(n.rows), static_cast<long long>(n.updates),
                 static_cast<long long>(n.skipped), static_cast<long long>(bad_rows_), errors.c_str());
    if (!save_dir_.empty())
      std::fprintf(stderr, "saved %s (online.safetensors, model.safetensors) at row %lld\n",
                   save_dir_.c_str(), static_cast<long long>(saved_rows_));
    else if (n.updates > 0)
      std::fprintf(stderr, "not saved: what the %lld updates learnt is gone (--save DIR keeps it)\n",
                   static_cast<long long>(n.updates));
  }

  OnlineCommand& c_;
  std::unique_ptr<LineSource> source_;
  std::optional<std::string> header_;
  std::optional<OnlineLearner> learner_;
  std::optional<RowParser> parser_;
  std::optional<trainers::Vocabulary::Encoder> encoder_;  // token models
  std::vector<std::string> symbol_cells_;                 // each token's symbol as a CSV cell
  std::optional<std::ofstream> metrics_;
  std::optional<PredictionWriter> writer_;
  std::optional<PrequentialScore> score_;
  std::vector<std::string> key_columns_;
  std::string reset_column_, save_dir_, text_;
  ParsedRow parsed_;
  std::vector<std::int32_t> ids_;
  std::vector<double> previous_;  // the last prediction, scored against the next row or token
  bool have_previous_ = false;
  clock::time_point started_, last_report_, last_save_;
  std::int64_t bad_rows_ = 0, saved_rows_ = 0;
};

}  // namespace

int run_online(int argc, const char* const* argv) {
  OnlineCommand command;
  const po::options_description options = command.describe();
  po::variables_map vm;
  if (!parse_command_line(
          argc, argv, options, vm,
          "usage: rewind online --data FILE|-|FIFO [--follow] | --listen PORT  [--checkpoint DIR | "
          "--resume DIR | new model options]  [--save DIR]\n"
          "Reads CSV rows (or text, for a token model) as they arrive; for each writes the prediction of "
          "the next row (token), then learns from it (truncated BPTT every k1 rows over the last k2)."))
    return 0;
  command.check(vm);
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGPIPE, SIG_IGN);  // a closed output is a write error, reported, after which the run saves
  OnlineRun run(command, vm);
  run.describe();
  try {
    return run.run();
  } catch (const std::exception&) {
    run.save();  // a malformed row, a closed output, non-finite updates: what was learnt is kept
    throw;
  }
}

}  // namespace rwd::cli
