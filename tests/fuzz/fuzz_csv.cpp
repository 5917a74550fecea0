// libFuzzer target: the CSV reader and the streams cut from its table.
#include <exception>

#include "fuzz_input.hpp"
#include "rewind/trainers/csv.hpp"
#include "rewind/trainers/data.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string file = rwd::fuzz::as_file(data, size, ".csv");
  try {
    const rwd::trainers::CsvTable table = rwd::trainers::CsvTable::read(file);
    rwd::trainers::CsvOptions options;
    if (table.columns.size() > 1) options.reset_column = table.columns.back();
    const auto streams = rwd::trainers::csv_streams(table, options, 0, table.rows.size(), 1 + size % 3);
    (void)streams->steps();
  } catch (const std::exception&) {
  }
  return 0;
}
