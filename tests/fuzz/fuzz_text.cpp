// libFuzzer target: the character-level loader: vocabulary, encoding, and the streams cut from the text.
#include <exception>

#include "rewind/trainers/data.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const rwd::trainers::CharVocabulary vocabulary = rwd::trainers::CharVocabulary::of(text);
    const std::vector<std::int32_t> ids = vocabulary.encode(text);
    const auto streams = rwd::trainers::text_streams(ids, static_cast<std::int64_t>(vocabulary.symbols.size()),
                                                     1 + static_cast<std::int64_t>(size % 5));
    (void)streams->steps();
    // A text with a character the vocabulary lacks is refused by name.
    (void)rwd::trainers::CharVocabulary{vocabulary.symbols.substr(0, vocabulary.symbols.size() / 2)}.encode(text);
  } catch (const std::exception&) {
  }
  return 0;
}
