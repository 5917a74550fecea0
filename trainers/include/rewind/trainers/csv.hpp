// Time series from CSV files: the table as read, its rows as numbers (missing values handled as asked), and
// the streams a trainer reads. docs/timeseries.md.
#pragma once

#include <cstdint>
#include <istream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "rewind/trainers/data.hpp"
#include "rewind/trainers/export.hpp"

namespace rwd::trainers {

// A CSV file with a header row of column names (RFC 4180 fields on one line; a UTF-8 byte order mark and
// blank lines are skipped). Cells are kept as text: a column is read as numbers only when it is used, so a
// date or a label column that is not used never refuses a file.
struct REWIND_TRAINERS_EXPORT CsvTable {
  std::string path;
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> cells;  // cells[row][column], quotes removed, spaces trimmed
  std::vector<std::size_t> lines;               // the file line of each row, for errors

  // Errors name the file and line: a ragged row, an unclosed quote, a header without a name or with a name
  // twice.
  static CsvTable read(const std::string& path, char delimiter = ',');
  // The same from a stream (standard input); name stands for the file in errors.
  static CsvTable parse(std::istream& in, const std::string& name, char delimiter = ',');
  std::size_t rows() const { return cells.size(); }
  std::size_t column(const std::string& name) const;  // throws listing the columns
  // "'f.csv' line 12, column 'co2'".
  std::string where(std::size_t row, std::size_t column) const;
};

// One CSV record (RFC 4180 fields on one line) into cells: split at the delimiter outside double quotes, ""
// inside quotes a quote, spaces around an unquoted cell dropped; "a,b," has three cells, the last one empty.
// The strings of `cells` are reused (no allocation once they are long enough). Throws std::invalid_argument
// saying what is wrong (the caller says where).
REWIND_TRAINERS_EXPORT void csv_record(std::string_view line, char delimiter,
                                       std::vector<std::string>& cells);
// A cell as a finite number: the whole cell after leading blanks, in C's format whatever the locale (an
// optional sign, digits with '.' as the decimal point, an exponent); false for anything else (empty, text,
// inf, nan, trailing text).
REWIND_TRAINERS_EXPORT bool csv_number(std::string_view cell, double& value);

// What to do with an empty cell in a used column: refuse the file (naming line and column), drop the row,
// carry the last value forward, or interpolate linearly between the neighbouring values (by row). Values
// before the first known one take it, as do values after the last one.
enum class Missing { error, drop, ffill, interpolate };
REWIND_TRAINERS_EXPORT Missing missing_policy(const std::string& name);  // throws naming --missing
REWIND_TRAINERS_EXPORT const char* name_of(Missing missing);

struct CsvOptions {
  std::vector<std::string> inputs = {};   // input columns (empty: every column not used otherwise)
  std::vector<std::string> targets = {};  // predicted at the next step (empty: the inputs)
  std::vector<std::string> target_columns =
      {};                         // or explicit targets: these columns of the same row, not inputs
  std::string reset_column = {};  // a non-zero value starts a new sequence at that row
  std::vector<std::string> key_columns = {};  // carried through to predictions as text, never read as numbers
  Missing missing = Missing::error;
};

// The used columns of a table's rows as numbers: what a model reads and predicts, in the data's units.
struct REWIND_TRAINERS_EXPORT SeriesFrame {
  std::vector<std::string> input_names, target_names, key_names;
  std::vector<std::vector<double>> inputs;   // [row][input]
  std::vector<std::vector<double>> targets;  // [row][target]: the target columns' values at that row
  std::vector<std::vector<std::string>> keys;
  std::vector<std::uint8_t> resets;  // [row]: 1 starts a new sequence
  // [row]: 0 where a target's value was missing and filled in (ffill, interpolate): it trains, but is not an
  // actual value to score a prediction against.
  std::vector<std::uint8_t> targets_known;
  std::vector<std::size_t> lines;  // the file line of each row
  // true: row t's inputs predict row t + 1's targets (--targets); false: row t's (--target-columns).
  bool next_step = true;
  std::size_t rows() const { return inputs.size(); }
  // Whether row r has a target for a model that read rows up to r's input row: within the frame, and, for the
  // next row, not across a sequence boundary.
  bool has_target(std::size_t input_row) const;
};

// Resolves the options against the header (every name checked, listing the columns), reads the used columns
// as numbers (a cell that is not a finite number is an error naming the line and column) and applies the
// missing-value policy.
REWIND_TRAINERS_EXPORT SeriesFrame series_frame(const CsvTable& table, const CsvOptions& options);

// Rows [begin, end) of the frame as `batch` contiguous streams (next-step frames use one row more, which
// only targets read). Rows before scored_from carry no loss: they only warm the state up.
REWIND_TRAINERS_EXPORT std::unique_ptr<SeriesData> series_streams(const SeriesFrame& frame, std::size_t begin,
                                                                  std::size_t end, std::int64_t batch,
                                                                  std::size_t scored_from = 0);

// series_streams(series_frame(table, options), ...).
REWIND_TRAINERS_EXPORT std::unique_ptr<SeriesData> csv_streams(const CsvTable& table,
                                                               const CsvOptions& options, std::size_t begin,
                                                               std::size_t end, std::int64_t batch);

}  // namespace rwd::trainers
