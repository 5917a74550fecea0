// libFuzzer target: the rows of rewind online as every input kind reads them (one line reader for standard
// input, a named pipe, a growing file and a socket), with a line limit that the input's size moves, and the
// row parser on the stream's header and each line. Bad lines throw std::exception with a message.
#include <exception>
#include <optional>
#include <stdexcept>

#include "fuzz_input.hpp"
#include "rewind/runtime/stream.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string file = rwd::fuzz::as_file(data, size, ".rows");
  try {
    const auto lines = rwd::runtime::open_lines(file, {.max_line = 16 + size % 256});
    std::optional<rwd::runtime::RowParser> parser;
    rwd::runtime::ParsedRow row;
    for (;;) {
      std::optional<std::string_view> line;
      try {
        line = lines->next();
      } catch (const std::length_error&) {
        continue;  // a line over the limit is refused; the source goes on after it
      }
      if (!line) break;
      try {
        if (!parser) {
          // The header's columns: the first a key, the last a reset column, the others inputs, the first of
          // them the target.
          rwd::runtime::RowParser header(*line, {}, {}, {}, "", size % 2 ? ',' : ';');
          const std::vector<std::string>& c = header.columns();
          if (c.size() < 3) return 0;
          const std::vector<std::string> inputs(c.begin() + 1, c.end() - 1);
          parser.emplace(*line, inputs, std::vector<std::string>{inputs.front()},
                         std::vector<std::string>{c.front()}, c.back(), size % 2 ? ',' : ';');
          continue;
        }
        parser->parse(*line, lines->line(), row);
      } catch (const std::invalid_argument&) {
      }
    }
  } catch (const std::exception&) {
  }
  return 0;
}
