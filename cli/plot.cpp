#include "plot.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "parse.hpp"

namespace rwd::cli {

void write_text_file(const std::string& path, const std::string& text, const std::string& option) {
  const std::string temp = path + ".tmp";
  {
    std::ofstream file(temp, std::ios::binary);
    file << text;
    file.close();
    if (!file) {
      std::remove(temp.c_str());
      throw std::runtime_error(option + ": cannot write '" + path + "'");
    }
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(temp.c_str());
    throw std::runtime_error(option + ": cannot write '" + path + "': " + why);
  }
}

bool render_gnuplot(const std::string& png, const std::string& size, const std::string& script) {
  if (std::system("command -v gnuplot > /dev/null 2>&1") != 0) {
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

}  // namespace rwd::cli
