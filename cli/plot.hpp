// Figures drawn with gnuplot: a run's curves from its metrics (rewind plot, rewind train --plot), and the
// runner every plotting command shares.
#pragma once

#include <string>
#include <vector>

namespace rwd::cli {

// Whether gnuplot is on PATH; plotting commands say how to install it when it is not.
bool have_gnuplot();
// Writes `script` (which sets its own terminal and output) to PNG + ".gp" and runs gnuplot on it; throws
// naming the script when gnuplot fails.
void run_gnuplot(const std::string& png, const std::string& script);

// Training loss (smoothed) and validation loss against updates and against wall time, and the learning rate,
// for each run's metrics.jsonl (the first is the main run, the others compared with it); the best validation
// is marked. Writes PNG, PNG.gp and one PNG.N.csv per run.
void plot_runs(const std::vector<std::string>& metrics_files, const std::string& png);

}  // namespace rwd::cli
