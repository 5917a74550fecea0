// Reads CSV rows on standard input (a header, then one row per line, as they come) and writes, for each row,
// the model's prediction of the next one in the data's units. The model, its columns and its transforms all
// come from the saved run: nothing is typed in by hand.
//   forecast RUN_DIR < rows.csv
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "rewind/runtime/predictor.hpp"

namespace {
std::vector<std::string> cells(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream in(line);
  for (std::string cell; std::getline(in, cell, ',');) out.push_back(cell);
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: forecast RUN_DIR < rows.csv\n";
    return 2;
  }
  try {
    rwd::runtime::Predictor predictor(argv[1]);
    if (!predictor.series()) throw std::runtime_error(predictor.file() + " is not a time series model");
    std::string line;
    if (!std::getline(std::cin, line)) throw std::runtime_error("no header row on standard input");
    const std::vector<std::string> header = cells(line);
    // Where each column the model reads sits in the rows.
    const auto position = [&](const std::string& name) {
      for (std::size_t i = 0; i < header.size(); ++i)
        if (header[i] == name) return i;
      throw std::runtime_error("the rows have no column '" + name + "'");
    };
    std::vector<std::size_t> inputs, targets;
    for (const std::string& name : predictor.inputs()) inputs.push_back(position(name));
    for (const std::string& name : predictor.targets()) targets.push_back(position(name));

    for (const std::string& name : predictor.targets()) std::cout << name << "_next,";
    std::cout << "rows_read\n";
    std::size_t rows = 0;
    std::vector<double> x(inputs.size()), now(targets.size());
    while (std::getline(std::cin, line)) {
      const std::vector<std::string> row = cells(line);
      if (row.size() != header.size())
        throw std::runtime_error("row " + std::to_string(rows + 1) + " is ragged");
      for (std::size_t i = 0; i < inputs.size(); ++i) x[i] = std::stod(row[inputs[i]]);
      for (std::size_t j = 0; j < targets.size(); ++j) now[j] = std::stod(row[targets[j]]);
      const std::vector<double> next = predictor.step(x, now);
      for (double v : next) std::printf("%.6f,", v);
      std::printf("%zu\n", ++rows);
      std::fflush(stdout);  // a prediction per row, as it arrives
    }
  } catch (const std::exception& e) {
    std::cerr << "forecast: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
