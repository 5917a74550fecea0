// rewind plot: a run's curves from its metrics file.
#include "plot.hpp"

#include <boost/program_options.hpp>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "commands.hpp"
#include "parse.hpp"
#include "rewind/models/atomic_file.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace rwd::cli {
namespace {

struct Row {
  std::int64_t update = 0;
  double seconds = NAN, loss = NAN, smoothed = NAN, lr = NAN, eval_loss = NAN;
  double eval_rmse = NAN, persistence_rmse = NAN;  // time series: the first target column, in its units
};

// A metrics file's rows, and for a time series the column whose errors its evaluations report.
struct Metrics {
  std::vector<Row> rows;
  std::string column;  // empty: token data (losses in nats)
};

// One row per update and per validation run, in update order. A metrics file is appended to by every resume:
// a run resumed from an earlier checkpoint repeats updates, and its rows replace the ones they repeat; its
// clock restarts, so its times are offset by the time the replaced part had reached.
Metrics read_metrics(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open metrics file '" + path + "'");
  Metrics metrics;
  std::vector<Row>& rows = metrics.rows;
  double offset = 0, last_seconds = 0, smoothed = NAN;
  std::string line;
  for (std::int64_t number = 1; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
      if (!j.is_object() || !j.contains("update")) throw std::runtime_error("no \"update\"");
      const std::int64_t update = j.at("update");
      if (j.contains("loss")) {
        if (!rows.empty() && update <= rows.back().update) {  // a resume from an earlier checkpoint
          while (!rows.empty() && rows.back().update >= update) rows.pop_back();
          offset = rows.empty() ? 0 : rows.back().seconds;
          smoothed = NAN;
          for (const Row& r : rows)
            if (!std::isnan(r.loss)) smoothed = r.smoothed;
        } else if (double(j.at("seconds")) < last_seconds) {  // a resume where the last run stopped
          offset = rows.empty() ? 0 : rows.back().seconds;
        }
        last_seconds = j.at("seconds");
        Row r;
        r.update = update, r.seconds = offset + last_seconds, r.loss = j.at("loss"),
        r.lr = j.value("lr", NAN);
        smoothed = std::isnan(smoothed) ? r.loss : 0.95 * smoothed + 0.05 * r.loss;  // the progress line's
        r.smoothed = smoothed;
        rows.push_back(r);
      } else if (j.contains("eval_loss")) {
        Row r;
        r.update = update, r.eval_loss = j.at("eval_loss");
        r.seconds = rows.empty() ? 0 : rows.back().seconds;
        if (j.contains("eval_columns") && !j["eval_columns"].empty()) {
          const auto first = j["eval_columns"].begin();
          metrics.column = first.key();
          r.eval_rmse = first.value().at("rmse");
          if (j.contains("eval_persistence"))
            r.persistence_rmse = j["eval_persistence"].at(first.key()).at("rmse");
        }
        rows.push_back(r);
      }
    } catch (const std::exception& e) {
      throw std::runtime_error("metrics file '" + path + "', line " + std::to_string(number) +
                               ": not a metrics record (" + e.what() + ")");
    }
  }
  if (rows.empty()) throw std::runtime_error("metrics file '" + path + "' holds no updates");
  return metrics;
}

std::string label_of(const std::string& path) {
  const fs::path p(path);
  const std::string dir = p.parent_path().filename().string();
  std::string label = dir.empty() ? p.filename().string() : dir + "/" + p.filename().string();
  for (char& c : label)
    if (c == '\'' || c == '_') c = ' ';  // gnuplot quoting and enhanced-text subscripts
  return label;
}

}  // namespace

bool have_gnuplot() {
  return std::system("command -v gnuplot > /dev/null 2>&1") == 0;
}

void write_text_file(const std::string& path, const std::string& text, const std::string& option) {
  models::write_file_atomically(
      path,
      [&](std::FILE* file) {
        if (std::fwrite(text.data(), 1, text.size(), file) != text.size())
          throw std::runtime_error(option + ": cannot write '" + path + "': " + std::strerror(errno));
      },
      option);
}

bool render_gnuplot(const std::string& png, const std::string& size, const std::string& script) {
  if (!have_gnuplot()) {
    std::printf("--plot: gnuplot is not installed (apt-get install gnuplot-nox); skipped\n");
    return false;
  }
  const auto header = [&](const std::string& output) {
    return "set terminal pngcairo noenhanced size " + size + " font ',10'\nset output '" + output + "'\n";
  };
  // The kept script writes the PNG itself when run by hand; this run sends it to a temporary file.
  const std::string script_path = png + ".gp", run_path = png + ".run.gp", temp_png = png + ".tmp";
  write_text_file(script_path, header(png) + script, "--plot");
  write_text_file(run_path, header(temp_png) + script, "--plot");
  const int status = std::system(("gnuplot " + shell_quote(run_path)).c_str());
  std::remove(run_path.c_str());
  if (status != 0 || std::rename(temp_png.c_str(), png.c_str()) != 0) {
    std::remove(temp_png.c_str());
    throw std::runtime_error("--plot: gnuplot failed on " + script_path);
  }
  std::printf("wrote %s (gnuplot script %s)\n", png.c_str(), script_path.c_str());
  return true;
}

void plot_runs(const std::vector<std::string>& metrics_files, const std::string& png) {
  if (!have_gnuplot()) throw std::runtime_error("gnuplot is not installed (apt-get install gnuplot-nox)");
  std::vector<std::string> csvs, labels;
  std::ostringstream best_marks;
  std::string column;  // a time series' first target: its validation RMSE replaces the wall-time panel
  for (std::size_t i = 0; i < metrics_files.size(); ++i) {
    const Metrics metrics = read_metrics(metrics_files[i]);
    const std::vector<Row>& rows = metrics.rows;
    if (column.empty()) column = metrics.column;
    const std::string csv = png + "." + std::to_string(i) + ".csv";
    std::ofstream out(csv);
    out << "update,seconds,loss,smoothed_loss,lr,eval_loss,eval_rmse,persistence_rmse\n";
    const Row* best = nullptr;
    for (const Row& r : rows) {
      out << r.update << ',' << r.seconds << ',' << r.loss << ',' << r.smoothed << ',' << r.lr << ','
          << r.eval_loss << ',' << r.eval_rmse << ',' << r.persistence_rmse << '\n';
      if (!std::isnan(r.eval_loss) && (!best || r.eval_loss < best->eval_loss)) best = &r;
    }
    if (!out) throw std::runtime_error("cannot write '" + csv + "'");
    if (best)
      best_marks << best->update << ',' << best->seconds << ',' << best->eval_loss << ',' << i << '\n';
    csvs.push_back(csv);
    labels.push_back(label_of(metrics_files[i]));
  }
  const std::string best_csv = png + ".best.csv";
  std::ofstream(best_csv) << "update,seconds,eval_loss,run\n" << best_marks.str();

  std::ostringstream gp;
  gp << "set datafile separator ','\nset datafile missing 'nan'\nset key top right\nset grid\n"
     << "set multiplot layout 1,3 title 'training (smoothed) and validation loss; * best validation'\n";
  const std::string unit = column.empty() ? "loss (nats)" : "loss (model units)";
  auto loss_panel = [&](const char* title, const char* xlabel, int x) {
    gp << "set title '" << title << "'\nset xlabel '" << xlabel << "'\nset ylabel '" << unit << "'\nplot ";
    for (std::size_t i = 0; i < csvs.size(); ++i)
      gp << "'" << csvs[i] << "' using " << x << ":4 every ::1 with lines lc " << i + 1 << " title '"
         << labels[i] << " training', '" << csvs[i] << "' using " << x << ":6 every ::1 with linespoints lc "
         << i + 1 << " dt 2 pt 7 ps 0.5 title '" << labels[i] << " validation', ";
    gp << "'" << best_csv << "' using " << x << ":3:($4 + 1) every ::1 with points pt 3 ps 2.5 lc variable "
       << "notitle\n";
  };
  loss_panel("against updates", "update", 1);
  if (column.empty()) {
    loss_panel("against wall time", "seconds", 2);
  } else {  // errors in the data's units, persistence's for scale
    gp << "set title 'validation RMSE of " << label_of(column) << " (data units)'\nset xlabel 'update'\n"
       << "set ylabel 'RMSE'\nplot ";
    for (std::size_t i = 0; i < csvs.size(); ++i)
      gp << (i ? ", " : "") << "'" << csvs[i] << "' using 1:7 every ::1 with linespoints lc " << i + 1
         << " pt 7 ps 0.5 title '" << labels[i] << "', '" << csvs[i] << "' using 1:8 every ::1 with lines lc "
         << i + 1 << " dt 3 title '" << labels[i] << " persistence'";
    gp << "\n";
  }
  // The offset keeps a constant rate off the top border, where gnuplot's autoscale would hide it.
  gp << "set title 'learning rate'\nset xlabel 'update'\nset ylabel 'lr'\nset yrange [0:*]\n"
     << "set offsets 0, 0, graph 0.1, 0\nplot ";
  for (std::size_t i = 0; i < csvs.size(); ++i)
    gp << (i ? ", " : "") << "'" << csvs[i] << "' using 1:5 every ::1 with lines lc " << i + 1 << " title '"
       << labels[i] << "'";
  gp << "\nunset multiplot\n";
  render_gnuplot(png, "1800,560", gp.str());
}

namespace {

// rewind online's metrics: one record per report ("row", "columns" or "tokens", latencies).
bool is_online_metrics(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line) && line.empty()) {
  }
  return line.find("\"rows_per_second\"") != std::string::npos;
}

}  // namespace

void plot_online(const std::vector<std::string>& metrics_files, const std::string& png) {
  if (!have_gnuplot()) throw std::runtime_error("gnuplot is not installed (apt-get install gnuplot-nox)");
  std::vector<std::string> csvs, labels;
  std::string column;  // the first target's errors are drawn, or a token model's log loss
  bool tokens = false;
  for (std::size_t i = 0; i < metrics_files.size(); ++i) {
    const std::string& path = metrics_files[i];
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open metrics file '" + path + "'");
    const std::string csv = png + "." + std::to_string(i) + ".csv";
    std::ofstream out(csv);
    out << "row,rmse,mae,predict_p50,predict_p99,learn_p50,learn_p99,rows_per_second\n";
    std::string line;
    std::int64_t records = 0;
    for (std::int64_t number = 1; std::getline(in, line); ++number) {
      if (line.empty()) continue;
      try {
        const nlohmann::json j = nlohmann::json::parse(line);
        const nlohmann::json& columns = j.at("columns");
        if (column.empty() && !columns.empty()) column = columns.begin().key();
        const nlohmann::json& c = columns.contains(column) ? columns.at(column) : nlohmann::json::object();
        const auto number_or_nan = [](const nlohmann::json& o, const char* key) {
          return o.contains(key) && o.at(key).is_number() ? o.at(key).get<double>() : NAN;
        };
        tokens = tokens || j.contains("tokens");
        const nlohmann::json& t = j.contains("tokens") ? j.at("tokens") : nlohmann::json::object();
        out << j.at("row").get<std::int64_t>() << ','
            << (tokens ? number_or_nan(t, "log_loss") : number_or_nan(c, "rmse")) << ','
            << (tokens ? number_or_nan(t, "accuracy") : number_or_nan(c, "mae")) << ','
            << number_or_nan(j.at("predict_us"), "p50") << ',' << number_or_nan(j.at("predict_us"), "p99")
            << ',' << number_or_nan(j.at("learn_us"), "p50") << ',' << number_or_nan(j.at("learn_us"), "p99")
            << ',' << j.at("rows_per_second").get<double>() << '\n';
        ++records;
      } catch (const std::exception& e) {
        throw std::runtime_error("metrics file '" + path + "', line " + std::to_string(number) +
                                 ": not a record of rewind online (" + e.what() + ")");
      }
    }
    if (records == 0) throw std::runtime_error("metrics file '" + path + "' holds no reports");
    if (!out) throw std::runtime_error("cannot write '" + csv + "'");
    csvs.push_back(csv);
    labels.push_back(label_of(path));
  }
  std::ostringstream gp;
  gp << "set datafile separator ','\nset datafile missing 'nan'\nset key top right\nset grid\nset xlabel "
        "'row'\n"
     << "set multiplot layout 1,3 title 'rewind online: prequential (test, then train) errors and costs per "
        "report'\n"
     << (tokens ? "set title 'prequential log loss of the next token'\nset ylabel 'nats per token'\nplot "
                : "set title 'prequential RMSE of " + label_of(column) +
                      " (data units)'\nset ylabel 'RMSE'\nplot ");
  for (std::size_t i = 0; i < csvs.size(); ++i)
    gp << (i ? ", " : "") << "'" << csvs[i] << "' using 1:2 every ::1 with linespoints lc " << i + 1
       << " pt 7 ps 0.4 title '" << labels[i] << "'";
  gp << "\nset title 'latency per row (predict) and per update (learn)'\nset ylabel 'microseconds'\nset "
        "logscale y\n"
     << "plot '" << csvs[0]
     << "' using 1:4 every ::1 with lines lc 1 title 'predict p50', '' using 1:5 every ::1 "
     << "with lines lc 1 dt 2 title 'predict p99', '' using 1:6 every ::1 with lines lc 2 title 'learn p50', "
        "'' "
     << "using 1:7 every ::1 with lines lc 2 dt 2 title 'learn p99'\nunset logscale y\n"
     << "set title 'throughput'\nset ylabel 'rows per second'\nset yrange [0:*]\nplot ";
  for (std::size_t i = 0; i < csvs.size(); ++i)
    gp << (i ? ", " : "") << "'" << csvs[i] << "' using 1:8 every ::1 with lines lc " << i + 1 << " title '"
       << labels[i] << "'";
  gp << "\nunset multiplot\n";
  render_gnuplot(png, "1800,560", gp.str());
}

void plot_predictions(const std::string& path, const std::string& png) {
  if (!have_gnuplot()) throw std::runtime_error("gnuplot is not installed (apt-get install gnuplot-nox)");
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open predictions file '" + path + "'");
  std::string header;
  std::getline(in, header);
  const std::vector<std::string> columns = split_list(header);
  const auto at = std::find(columns.begin(), columns.end(), "row");
  if (at == columns.end() || columns.end() - at < 5 || (columns.end() - at - 3) % 2 != 0)
    throw std::runtime_error("'" + path + "' is not a predictions file of rewind predict (header: " + header +
                             ")");
  const auto keys = static_cast<int>(at - columns.begin());  // gnuplot columns count from 1
  const int row = keys + 1, step = keys + 3;
  // The last row with a known value (the forecast horizon lies past it), and the keys to label rows with.
  std::string line;
  double last_known = -1, last_row = -1;
  std::vector<std::pair<double, std::string>> labels;  // (row, first key) of the one-step rows
  while (std::getline(in, line)) {
    std::vector<std::string> cells;  // split without dropping empty cells (split_list would)
    std::size_t start = 0;
    for (std::size_t comma; (comma = line.find(',', start)) != std::string::npos; start = comma + 1)
      cells.push_back(line.substr(start, comma - start));
    cells.push_back(line.substr(start));
    if (cells.size() != columns.size()) continue;  // a quoted key with a comma: not needed for the bounds
    const double r = std::atof(cells[static_cast<std::size_t>(row - 1)].c_str());
    last_row = std::max(last_row, r);
    if (!cells[static_cast<std::size_t>(step)].empty()) last_known = std::max(last_known, r);
    if (keys > 0 && cells[static_cast<std::size_t>(step - 1)] == "1") labels.emplace_back(r, cells[0]);
  }
  const std::size_t targets = static_cast<std::size_t>(columns.end() - at - 3) / 2;
  std::ostringstream gp;
  gp << "set datafile separator ','\nset key top left\nset grid\nset xlabel 'row'\nset mxtics 1\n";
  if (!labels.empty()) {  // eight labels from the first key column
    gp << "set xlabel '" << label_of(columns[0]) << "'\nset xtics (";
    const std::size_t every = std::max<std::size_t>(1, labels.size() / 8);
    for (std::size_t i = 0; i < labels.size(); i += every)
      gp << (i ? ", " : "") << "'" << label_of(labels[i].second) << "' " << labels[i].first;
    gp << ")\n";
  }
  gp << "set multiplot layout " << targets
     << ",1 title 'actual and predicted; shaded: the forecast horizon'\n";
  if (last_row > last_known)
    gp << "set object 1 rect from " << last_known << ", graph 0 to " << last_row
       << ", graph 1 fc rgb '#e8e8e8' fs solid behind\n";
  for (std::size_t j = 0; j < targets; ++j) {
    const int actual = keys + 4 + 2 * static_cast<int>(j), predicted = actual + 1;
    const std::string name = label_of(columns[static_cast<std::size_t>(actual - 1)]);
    gp << "set title '" << name << "'\nset ylabel '" << name << "'\nplot '" << path << "' using " << row
       << ":(column(" << step << ") == 1 ? column(" << actual << ") : 1/0) every ::1 with lines lw 3 "
       << "lc rgb '#bbbbbb' title 'actual', '' using " << row << ":(column(" << step << ") == 1 ? column("
       << predicted << ") : 1/0) every ::1 with lines lc rgb '#1f77b4' title 'one step ahead', '' using "
       << row << ":(column(" << step << ") > 1 || column(" << row << ") > " << last_known << " ? column("
       << predicted << ") : 1/0) every ::1 with points pt 7 ps 0.4 lc rgb '#d62728' title 'forecast'\n";
  }
  gp << "unset multiplot\n";
  render_gnuplot(png, "1400," + std::to_string(360 * targets + 80), gp.str());
}

int run_plot(int argc, const char* const* argv) {
  std::string metrics, out, predictions;
  std::vector<std::string> compare;
  po::options_description options("rewind plot options");
  options.add_options()("help,h", "show this help")("metrics", po::value(&metrics),
                                                    "the run's metrics.jsonl (rewind train --metrics)")(
      "compare", po::value(&compare)->composing(),
      "another run's metrics.jsonl drawn beside it (repeatable)")(
      "predictions", po::value(&predictions), "draw rewind predict's CSV instead: actual against predicted")(
      "out", po::value(&out), "the PNG to write");
  po::positional_options_description positional;
  positional.add("metrics", 1);
  po::variables_map vm;
  if (!parse_command_line(
          argc, argv, options, vm,
          "usage: rewind plot RUN/metrics.jsonl [--compare OTHER/metrics.jsonl ...] --out curves.png | "
          "rewind plot --predictions preds.csv --out preds.png",

          &positional))
    return 0;
  if (out.empty()) throw std::invalid_argument("--out PNG is required");
  if (!predictions.empty()) {
    if (!metrics.empty() || !compare.empty())
      throw std::invalid_argument("give --predictions FILE or a metrics file, not both");
    plot_predictions(predictions, out);
    return 0;
  }
  if (metrics.empty())
    throw std::invalid_argument("give the run's metrics file (rewind plot RUN/metrics.jsonl)");
  std::vector<std::string> files{metrics};
  files.insert(files.end(), compare.begin(), compare.end());
  if (is_online_metrics(metrics)) {
    plot_online(files, out);
  } else {
    plot_runs(files, out);
  }
  return 0;
}

}  // namespace rwd::cli
