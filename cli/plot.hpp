// Files the commands write (tables, JSON, gnuplot scripts and plots), each atomically, and the figures drawn
// with gnuplot: a run's curves from its metrics (rewind plot, rewind train --plot), the analyses' and
// bench-memory's plots.
#pragma once

#include <string>
#include <vector>

namespace rwd::cli {

// Writes text to path atomically (models::write_file_atomically); errors name the path and the option.
void write_text_file(const std::string& path, const std::string& text, const std::string& option);

// Whether gnuplot is on PATH; plotting commands say how to install it when it is not.
bool have_gnuplot();
// Renders a gnuplot script (without terminal and output: they are added) to a PNG of size "W,H". The script
// is kept beside it as PNG.gp; the PNG goes to a temporary file renamed into place. Returns false (after
// saying so) when gnuplot is not installed.
bool render_gnuplot(const std::string& png, const std::string& size, const std::string& script);

// Training loss (smoothed) and validation loss against updates and against wall time, and the learning rate,
// for each run's metrics.jsonl (the first is the main run, the others compared with it); the best validation
// is marked. Writes PNG, PNG.gp and one PNG.N.csv per run; throws when gnuplot is missing.
void plot_runs(const std::vector<std::string>& metrics_files, const std::string& png);

// Actual against predicted values from rewind predict's CSV, one panel per target, over the rows (labelled
// with the first key column): one-step predictions, forecasts (steps > 1) and the forecast horizon past the
// last known value shaded. Throws naming the file when it is not a predictions file.
void plot_predictions(const std::string& predictions_csv, const std::string& png);
// rewind online's reports: the prequential RMSE of the first target over the rows for each metrics file (the
// first the main run, the others compared with it: a frozen model beside one that learns), the main run's
// latencies (p50, p99 of predicting a row and of an update) and every run's rows per second.
void plot_online(const std::vector<std::string>& metrics_files, const std::string& png);

}  // namespace rwd::cli
