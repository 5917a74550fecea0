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
};

// One row per update and per validation run, in update order. A metrics file is appended to by every resume:
// a run resumed from an earlier checkpoint repeats updates, and its rows replace the ones they repeat; its
// clock restarts, so its times are offset by the time the replaced part had reached.
std::vector<Row> read_metrics(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open metrics file '" + path + "'");
  std::vector<Row> rows;
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
        rows.push_back(r);
      }
    } catch (const std::exception& e) {
      throw std::runtime_error("metrics file '" + path + "', line " + std::to_string(number) +
                               ": not a metrics record (" + e.what() + ")");
    }
  }
  if (rows.empty()) throw std::runtime_error("metrics file '" + path + "' holds no updates");
  return rows;
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
  for (std::size_t i = 0; i < metrics_files.size(); ++i) {
    const std::vector<Row> rows = read_metrics(metrics_files[i]);
    const std::string csv = png + "." + std::to_string(i) + ".csv";
    std::ofstream out(csv);
    out << "update,seconds,loss,smoothed_loss,lr,eval_loss\n";
    const Row* best = nullptr;
    for (const Row& r : rows) {
      out << r.update << ',' << r.seconds << ',' << r.loss << ',' << r.smoothed << ',' << r.lr << ','
          << r.eval_loss << '\n';
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
  auto loss_panel = [&](const char* title, const char* xlabel, int x) {
    gp << "set title '" << title << "'\nset xlabel '" << xlabel << "'\nset ylabel 'loss (nats)'\nplot ";
    for (std::size_t i = 0; i < csvs.size(); ++i)
      gp << "'" << csvs[i] << "' using " << x << ":4 every ::1 with lines lc " << i + 1 << " title '"
         << labels[i] << " training', '" << csvs[i] << "' using " << x << ":6 every ::1 with linespoints lc "
         << i + 1 << " dt 2 pt 7 ps 0.5 title '" << labels[i] << " validation', ";
    gp << "'" << best_csv << "' using " << x << ":3:($4 + 1) every ::1 with points pt 3 ps 2.5 lc variable "
       << "notitle\n";
  };
  loss_panel("against updates", "update", 1);
  loss_panel("against wall time", "seconds", 2);
  // The offset keeps a constant rate off the top border, where gnuplot's autoscale would hide it.
  gp << "set title 'learning rate'\nset xlabel 'update'\nset ylabel 'lr'\nset yrange [0:*]\n"
     << "set offsets 0, 0, graph 0.1, 0\nplot ";
  for (std::size_t i = 0; i < csvs.size(); ++i)
    gp << (i ? ", " : "") << "'" << csvs[i] << "' using 1:5 every ::1 with lines lc " << i + 1 << " title '"
       << labels[i] << "'";
  gp << "\nunset multiplot\n";
  render_gnuplot(png, "1800,560", gp.str());
}

int run_plot(int argc, const char* const* argv) {
  std::string metrics, out;
  std::vector<std::string> compare;
  po::options_description options("rewind plot options");
  options.add_options()("help,h", "show this help")("metrics", po::value(&metrics),
                                                    "the run's metrics.jsonl (rewind train --metrics)")(
      "compare", po::value(&compare)->composing(),
      "another run's metrics.jsonl drawn beside it (repeatable)")("out", po::value(&out), "the PNG to write");
  po::positional_options_description positional;
  positional.add("metrics", 1);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, options, vm,
                          "usage: rewind plot RUN/metrics.jsonl [--compare OTHER/metrics.jsonl ...] --out "
                          "curves.png",
                          &positional))
    return 0;
  if (metrics.empty())
    throw std::invalid_argument("give the run's metrics file (rewind plot RUN/metrics.jsonl)");
  if (out.empty()) throw std::invalid_argument("--out PNG is required");
  std::vector<std::string> files{metrics};
  files.insert(files.end(), compare.begin(), compare.end());
  plot_runs(files, out);
  return 0;
}

}  // namespace rwd::cli
