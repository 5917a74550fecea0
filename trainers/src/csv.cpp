#include "rewind/trainers/csv.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <stdexcept>

namespace rwd::trainers {
namespace {

constexpr double missing_value = std::numeric_limits<double>::quiet_NaN();

// The values of one column, NaN where the cell is empty; a cell that is not a finite number is an error.
std::vector<double> numbers(const CsvTable& table, std::size_t column) {
  std::vector<double> out(table.rows());
  for (std::size_t r = 0; r < table.rows(); ++r) {
    const std::string& cell = table.cells[r][column];
    if (cell.empty()) {
      out[r] = missing_value;
      continue;
    }
    if (!csv_number(cell, out[r]))
      throw std::runtime_error(table.where(r, column) + ": '" + cell + "' is not a finite number");
  }
  return out;
}

// Fills a column's missing values by the policy (error and drop are handled by the caller).
void fill(std::vector<double>& v, Missing missing, const std::string& column) {
  std::vector<std::size_t> known;
  for (std::size_t r = 0; r < v.size(); ++r)
    if (!std::isnan(v[r])) known.push_back(r);
  if (known.size() == v.size()) return;
  if (known.empty()) throw std::runtime_error("column '" + column + "' has no value at all");
  std::size_t next = 0;  // index into known of the first known row at or after r
  for (std::size_t r = 0; r < v.size(); ++r) {
    while (next < known.size() && known[next] < r) ++next;
    if (!std::isnan(v[r])) continue;
    if (next == 0) {
      v[r] = v[known.front()];  // before the first known value
    } else if (next == known.size() || missing == Missing::ffill) {
      v[r] = v[known[next - 1]];
    } else {
      const std::size_t a = known[next - 1], b = known[next];
      const double w = static_cast<double>(r - a) / static_cast<double>(b - a);
      v[r] = v[a] + w * (v[b] - v[a]);
    }
  }
}

std::vector<std::size_t> indices(const CsvTable& table, const std::vector<std::string>& names) {
  std::vector<std::size_t> out;
  for (const std::string& n : names) out.push_back(table.column(n));
  return out;
}

}  // namespace

void csv_record(std::string_view line, char delimiter, std::vector<std::string>& cells) {
  std::size_t count = 0;  // cells filled; the strings beyond are kept for their capacity
  const auto cell = [&]() -> std::string& {
    if (count == cells.size()) cells.emplace_back();
    cells[count].clear();
    return cells[count];
  };
  std::string* current = &cell();
  bool quoted = false, was_quoted = false;
  const auto finish = [&] {
    if (!was_quoted) {  // spaces around an unquoted cell are dropped
      const auto first = current->find_first_not_of(" \t\r"), last = current->find_last_not_of(" \t\r");
      if (first == std::string::npos) {
        current->clear();
      } else {
        current->erase(last + 1);
        current->erase(0, first);
      }
    }
    ++count;
    was_quoted = false;
  };
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char ch = line[i];
    if (quoted) {
      if (ch == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        *current += '"';
        ++i;
      } else if (ch == '"') {
        quoted = false;
      } else {
        *current += ch;
      }
    } else if (ch == '"' && current->find_first_not_of(" \t") == std::string::npos) {
      quoted = was_quoted = true;
      current->clear();
    } else if (ch == delimiter) {
      finish();
      current = &cell();
    } else if (!(was_quoted && (ch == ' ' || ch == '\t' || ch == '\r'))) {
      if (was_quoted) throw std::invalid_argument("text after a closing quote");
      *current += ch;
    }
  }
  if (quoted) throw std::invalid_argument("a quote is not closed (fields cannot span lines)");
  finish();
  cells.resize(count);
}

bool csv_number(std::string_view cell, double& value) {
  // As strtod read cells before: leading blanks (a quoted " 3") and a '+' (from_chars takes '-' only).
  while (!cell.empty() && (cell.front() == ' ' || cell.front() == '\t')) cell.remove_prefix(1);
  if (!cell.empty() && cell.front() == '+') cell.remove_prefix(1);
  const auto [end, error] = std::from_chars(cell.data(), cell.data() + cell.size(), value);
  return !cell.empty() && error == std::errc() && end == cell.data() + cell.size() && std::isfinite(value);
}

CsvTable CsvTable::read(const std::string& path, char delimiter) {
  require_regular_file(path);
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open data file '" + path + "': " + std::strerror(errno));
  return parse(in, path, delimiter);
}

CsvTable CsvTable::parse(std::istream& in, const std::string& path, char delimiter) {
  CsvTable table;
  table.path = path;
  std::string line;
  std::size_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (line_number == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // a UTF-8 byte order mark
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = "'" + path + "' line " + std::to_string(line_number);
    std::vector<std::string> cells;
    try {
      csv_record(line, delimiter, cells);
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(where + ": " + e.what());
    }
    if (table.columns.empty()) {
      for (std::size_t c = 0; c < cells.size(); ++c) {
        if (cells[c].empty())
          throw std::runtime_error(where + ": column " + std::to_string(c + 1) + " has no name");
        for (std::size_t d = 0; d < c; ++d)
          if (cells[d] == cells[c])
            throw std::runtime_error(where + ": column '" + cells[c] + "' appears twice");
      }
      table.columns = std::move(cells);
      continue;
    }
    if (cells.size() != table.columns.size())
      throw std::runtime_error(where + ": " + std::to_string(cells.size()) + " values for " +
                               std::to_string(table.columns.size()) + " columns");
    table.cells.push_back(std::move(cells));
    table.lines.push_back(line_number);
  }
  if (table.columns.empty())
    throw std::runtime_error("'" + path + "' is empty: expected a header row of column names");
  return table;
}

std::size_t CsvTable::column(const std::string& name) const {
  for (std::size_t c = 0; c < columns.size(); ++c)
    if (columns[c] == name) return c;
  std::string all;
  for (const std::string& c : columns) all += (all.empty() ? "" : ", ") + c;
  throw std::invalid_argument("'" + path + "' has no column '" + name + "' (columns: " + all + ")");
}

std::string CsvTable::where(std::size_t row, std::size_t column) const {
  return "'" + path + "' line " + std::to_string(lines.at(row)) + ", column '" + columns.at(column) + "'";
}

Missing missing_policy(const std::string& name) {
  if (name == "error") return Missing::error;
  if (name == "drop") return Missing::drop;
  if (name == "ffill") return Missing::ffill;
  if (name == "interpolate") return Missing::interpolate;
  throw std::invalid_argument("--missing must be error, drop, ffill or interpolate, got '" + name + "'");
}

const char* name_of(Missing missing) {
  return missing == Missing::error   ? "error"
         : missing == Missing::drop  ? "drop"
         : missing == Missing::ffill ? "ffill"
                                     : "interpolate";
}

bool SeriesFrame::has_target(std::size_t input_row) const {
  if (!next_step) return input_row < rows();
  return input_row + 1 < rows() && resets[input_row + 1] == 0;
}

SeriesFrame series_frame(const CsvTable& table, const CsvOptions& options) {
  const bool explicit_targets = !options.target_columns.empty();
  if (explicit_targets && !options.targets.empty())
    throw std::invalid_argument(
        "give --targets (the next row's) or --target-columns (the same row's), not both");
  const std::vector<std::size_t> keys = indices(table, options.key_columns);
  const std::vector<std::size_t> target_cols =
      indices(table, explicit_targets ? options.target_columns : options.targets);
  const std::size_t none = table.columns.size();
  const std::size_t reset_col = options.reset_column.empty() ? none : table.column(options.reset_column);
  std::vector<std::size_t> input_cols = indices(table, options.inputs);
  const auto listed = [](const std::vector<std::size_t>& list, std::size_t c) {
    return std::ranges::find(list, c) != list.end();
  };
  if (input_cols.empty())
    for (std::size_t c = 0; c < table.columns.size(); ++c)
      if (c != reset_col && !listed(keys, c) && !(explicit_targets && listed(target_cols, c)))
        input_cols.push_back(c);
  if (input_cols.empty()) throw std::invalid_argument("CSV: no input columns left");
  for (std::size_t c : keys)
    if (listed(input_cols, c) || listed(target_cols, c) || c == reset_col)
      throw std::invalid_argument("--key-columns: '" + table.columns[c] +
                                  "' is also an input, a target or the reset column");
  const std::vector<std::size_t> predicted = target_cols.empty() ? input_cols : target_cols;

  // Every used column as numbers, then the missing values dealt with.
  std::vector<std::size_t> used = input_cols;
  for (std::size_t c : predicted)
    if (!listed(used, c)) used.push_back(c);
  if (reset_col != none) used.push_back(reset_col);
  std::vector<std::vector<double>> values;
  for (std::size_t c : used) values.push_back(numbers(table, c));
  std::vector<std::uint8_t> keep(table.rows(), 1), known(table.rows(), 1);
  for (std::size_t u = 0; u < used.size(); ++u)
    if (std::ranges::find(predicted, used[u]) != predicted.end())
      for (std::size_t r = 0; r < table.rows(); ++r) known[r] = known[r] && !std::isnan(values[u][r]);
  for (std::size_t u = 0; u < used.size(); ++u)
    for (std::size_t r = 0; r < table.rows(); ++r) {
      if (!std::isnan(values[u][r])) continue;
      if (options.missing == Missing::error)
        throw std::runtime_error(
            table.where(r, used[u]) +
            ": the value is missing (--missing drop, ffill or interpolate deals with gaps)");
      if (options.missing == Missing::drop) keep[r] = 0;
    }
  if (options.missing == Missing::ffill || options.missing == Missing::interpolate)
    for (std::size_t u = 0; u < used.size(); ++u) {
      if (used[u] == reset_col) {
        for (double& v : values[u]) v = std::isnan(v) ? 0.0 : v;  // a gap in the reset column starts nothing
      } else {
        fill(values[u], options.missing, table.columns[used[u]]);
      }
    }

  SeriesFrame f;
  f.next_step = !explicit_targets;
  for (std::size_t c : input_cols) f.input_names.push_back(table.columns[c]);
  for (std::size_t c : predicted) f.target_names.push_back(table.columns[c]);
  for (std::size_t c : keys) f.key_names.push_back(table.columns[c]);
  const auto value = [&](std::size_t c, std::size_t r) {
    return values[static_cast<std::size_t>(std::ranges::find(used, c) - used.begin())][r];
  };
  bool pending_reset = false;  // a dropped row's reset moves to the next row kept
  for (std::size_t r = 0; r < table.rows(); ++r) {
    const bool starts = reset_col != none && value(reset_col, r) != 0;
    if (!keep[r]) {
      pending_reset = pending_reset || starts;
      continue;
    }
    std::vector<double> in, out;
    for (std::size_t c : input_cols) in.push_back(value(c, r));
    for (std::size_t c : predicted) out.push_back(value(c, r));
    std::vector<std::string> key;
    for (std::size_t c : keys) key.push_back(table.cells[r][c]);
    f.inputs.push_back(std::move(in));
    f.targets.push_back(std::move(out));
    f.keys.push_back(std::move(key));
    f.resets.push_back(starts || pending_reset ? 1 : 0);
    f.targets_known.push_back(known[r]);
    f.lines.push_back(table.lines[r]);
    pending_reset = false;
  }
  return f;
}

std::unique_ptr<SeriesData> series_streams(const SeriesFrame& frame, std::size_t begin, std::size_t end,
                                           std::int64_t batch, std::size_t scored_from) {
  // Next-step prediction reads one row past each step.
  const std::size_t lookahead = frame.next_step ? 1 : 0;
  const std::int64_t steps =
      batch > 0 && end > begin + lookahead ? static_cast<std::int64_t>(end - begin - lookahead) / batch : 0;
  if (end > frame.rows() || steps < 1)
    throw std::invalid_argument(
        "CSV: " + std::to_string(end - begin) + " rows are too few for " + std::to_string(batch) +
        " streams: each needs a step" + (lookahead ? " and the next row as its target" : "") + ", " +
        std::to_string(static_cast<std::size_t>(std::max<std::int64_t>(batch, 1)) + lookahead) +
        " rows at least" + (batch > 1 ? " (fewer --batch streams need fewer)" : ""));
  const auto n_in = static_cast<std::int64_t>(frame.input_names.size()),
             n_out = static_cast<std::int64_t>(frame.target_names.size());
  auto data = std::make_unique<SeriesData>(batch, steps, n_in, n_out);
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t t = 0; t < steps; ++t) {
      const std::size_t row = begin + static_cast<std::size_t>(b * steps + t), target_row = row + lookahead;
      for (std::int64_t i = 0; i < n_in; ++i)
        data->features(t).set(b * n_in + i, frame.inputs[row][static_cast<std::size_t>(i)]);
      for (std::int64_t j = 0; j < n_out; ++j)
        data->targets(t).set(b * n_out + j, frame.targets[target_row][static_cast<std::size_t>(j)]);
      if (frame.resets[row]) data->set_reset(t, b);
      // The next row of another sequence, or a row before the scored ones, carries no loss.
      if (!frame.has_target(row) || target_row < scored_from) data->set_no_loss(t, b);
    }
  return data;
}

std::unique_ptr<SeriesData> csv_streams(const CsvTable& table, const CsvOptions& options, std::size_t begin,
                                        std::size_t end, std::int64_t batch) {
  return series_streams(series_frame(table, options), begin, end, batch);
}

}  // namespace rwd::trainers
