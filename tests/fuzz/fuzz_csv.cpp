// libFuzzer target: the CSV reader, its rows as numbers under every missing-value policy, the transforms
// fitted on them, and the streams cut from them.
#include <exception>

#include "fuzz_input.hpp"
#include "rewind/runtime/series.hpp"
#include "rewind/trainers/csv.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string file = rwd::fuzz::as_file(data, size, ".csv");
  try {
    const rwd::trainers::CsvTable table = rwd::trainers::CsvTable::read(file);
    rwd::trainers::CsvOptions options;
    if (table.columns.size() > 1) options.reset_column = table.columns.back();
    if (table.columns.size() > 2) options.key_columns = {table.columns.front()};
    options.missing = static_cast<rwd::trainers::Missing>(size % 4);
    const rwd::trainers::SeriesFrame frame = rwd::trainers::series_frame(table, options);
    rwd::runtime::SeriesTransform transform{size % 3 == 0   ? "standard"
                                            : size % 3 == 1 ? "minmax"
                                                            : "none",
                                            size % 2 == 0,
                                            {}};
    transform.fit(frame, frame.rows() / 2);
    const auto streams = rwd::trainers::series_streams(transform.apply(frame), 0, frame.rows(), 1 + size % 3);
    (void)streams->steps();
  } catch (const std::exception&) {
  }
  return 0;
}
