// libFuzzer target: the rows of rewind online as every input kind reads them (one line reader for standard
// input, a named pipe, a growing file and a socket), with a line limit that the input's size moves, and the
// row parser on the stream's header and each line; and each line as a token model reads text, through the
// vocabulary's encoder (bytes, chars or words, by the input's size). Bad lines throw std::exception with a
// message.
#include <exception>
#include <optional>
#include <stdexcept>

#include "fuzz_input.hpp"
#include "rewind/runtime/stream.hpp"
#include "rewind/trainers/tokens.hpp"

namespace {

const rwd::trainers::Vocabulary& vocabulary(std::size_t kind) {
  using rwd::trainers::TokenMode;
  static const rwd::trainers::Vocabulary vocabularies[] = {
      rwd::trainers::Vocabulary::of(TokenMode::bytes, {"ab,c;1.5\n"}, {"bytes"}),
      rwd::trainers::Vocabulary::of(TokenMode::chars, {"ab \xc3\xa9\n"}, {"chars"}),
      rwd::trainers::Vocabulary::of(TokenMode::words, {"the cat\nsat\n"}, {"words"}, 3)};
  return vocabularies[kind % 3];
}

}  // namespace

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
        const rwd::trainers::Vocabulary::Encoder encoder(vocabulary(size));
        std::vector<std::int32_t> ids;
        encoder.encode(std::string(*line) + "\n", "fuzz", {.skip_unknown = size % 5 == 0}, ids);
        for (std::int32_t id : ids)
          if (id < 0 || id >= vocabulary(size).size()) __builtin_trap();  // an id outside the vocabulary
      } catch (const std::invalid_argument&) {
      }
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
