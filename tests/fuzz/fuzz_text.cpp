// libFuzzer target: the character-level loader: vocabulary, encoding, and the streams cut from the text.
#include <exception>

#include "rewind/trainers/data.hpp"
#include "rewind/trainers/tokens.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const rwd::trainers::CharVocabulary vocabulary = rwd::trainers::CharVocabulary::of(text);
    const std::vector<std::int32_t> ids = vocabulary.encode(text);
    const auto streams = rwd::trainers::text_streams(
        ids, static_cast<std::int64_t>(vocabulary.symbols.size()), 1 + static_cast<std::int64_t>(size % 5));
    (void)streams->steps();
    // A text with a character the vocabulary lacks is refused by name.
    (void)rwd::trainers::CharVocabulary{vocabulary.symbols.substr(0, vocabulary.symbols.size() / 2)}.encode(
        text);
  } catch (const std::exception&) {
  }
  // --tokens chars and words: malformed UTF-8 is refused by offset; what is accepted decodes to itself
  // (chars) or to its words joined by spaces (words, every line ended).
  for (const auto mode : {rwd::trainers::TokenMode::chars, rwd::trainers::TokenMode::words}) {
    try {
      const auto vocabulary =
          rwd::trainers::Vocabulary::of(mode, {text}, {"fuzz"}, static_cast<std::int64_t>(size % 4));
      const std::vector<std::int32_t> ids = vocabulary.encode(text, "fuzz");
      const std::string back = vocabulary.decode(ids);
      if (mode == rwd::trainers::TokenMode::chars && back != text) __builtin_trap();
    } catch (const std::invalid_argument&) {
    }
  }
  return 0;
}
