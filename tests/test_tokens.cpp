// Tokenisation (bytes, UTF-8 characters, words) and token files read in place.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "rewind/trainers/tokens.hpp"

using namespace rwd;
using trainers::TokenMode;
using trainers::Vocabulary;
namespace fs = std::filesystem;

namespace {

using test::TempDir;

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

// This process's resident memory of one kind (RssAnon: heap; RssFile: mapped files), in bytes; -1 off Linux.
std::int64_t resident_bytes(const std::string& kind) {
  std::ifstream status("/proc/self/status");
  std::string key;
  std::int64_t kib = 0;
  while (status >> key) {
    if (key == kind + ":") {
      status >> kib;
      return kib * 1024;
    }
    status.ignore(1 << 10, '\n');
  }
  return -1;
}

}  // namespace

TEST_CASE("chars: accented UTF-8 text is one token per code point and decodes to itself", "[tokens]") {
  const std::string text =
      "h\xC3\xA9llo w\xC3\xB6rld\n\xC3\xA7\xC3\xA0 \xE2\x9C\x93 \xF0\x9D\x84\x9E\n";  // é ö ç à ✓ 𝄞
  const Vocabulary v = Vocabulary::of(TokenMode::chars, {text}, {"t.txt"});
  const std::vector<std::int32_t> ids = v.encode(text, "t.txt");
  CHECK(ids.size() == 19);  // code points, not the 26 bytes
  CHECK(v.decode(ids) == text);
  CHECK(std::count(v.symbols.begin(), v.symbols.end(), "\xC3\xA9") == 1);
  CHECK(std::is_sorted(v.symbols.begin(), v.symbols.end()));
  // Bytes split the same letter in two.
  CHECK(Vocabulary::of(TokenMode::bytes, {text}, {"t.txt"}).encode(text, "t.txt").size() == text.size());
}

TEST_CASE("chars: malformed UTF-8 is an error naming the file and the byte offset", "[tokens]") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"ab\xC3(", "byte offset 2"},            // a lead byte without its continuation
      {"abc\xC0\xAF", "byte offset 3"},        // an overlong '/'
      {"\xED\xA0\x80", "byte offset 0"},       // a surrogate
      {"x\xF4\x90\x80\x80", "byte offset 1"},  // past U+10FFFF
      {"xyz\xE2\x9C", "byte offset 3"},        // cut at the end
      {"a\x80", "byte offset 1"}};             // a lone continuation byte
  for (const auto& c : cases) {
    for (TokenMode mode : {TokenMode::chars, TokenMode::words}) {
      const std::string m = message_of([&] { (void)Vocabulary::of(mode, {c.first}, {"bad.txt"}); });
      CHECK_THAT(m, Catch::Contains("'bad.txt': invalid UTF-8 at " + c.second));
    }
  }
  // Bytes take any file.
  CHECK(Vocabulary::of(TokenMode::bytes, {std::string("ab\xC3(")}, {"bad.txt"}).size() == 4);
}

TEST_CASE("bytes: the vocabulary and ids of the character-level loader, so old checkpoints keep their ids",
          "[tokens]") {
  const std::string text = "Caf\xC3\xA9 \xFF\x01 zebra\n";
  const Vocabulary v = Vocabulary::of(TokenMode::bytes, {text}, {"t"});
  const trainers::CharVocabulary old = trainers::CharVocabulary::of(text);
  std::string joined;
  for (const std::string& s : v.symbols) joined += s;
  CHECK(joined == old.symbols);
  CHECK(v.encode(text, "t") == old.encode(text));
  CHECK(v.decode(v.encode(text, "t")) == text);
  CHECK_THAT(
      message_of([&] { (void)v.encode("Cx", "other.txt"); }),
      Catch::Contains("'other.txt': character 'x' (byte 120) at offset 1 is not in the model's vocabulary"));
}

TEST_CASE(
    "words: whitespace-split with <eos> per line, ranked by count then bytes, --vocab-size caps with <unk>",
    "[tokens]") {
  const std::string text = "the cat  sat\n\tthe dog\r\nthe end\nzebra";
  const Vocabulary all = Vocabulary::of(TokenMode::words, {text}, {"w.txt"});
  // <eos> 4 and the 3 tie: byte order puts '<' first. Then the singletons in byte order.
  CHECK(all.symbols == std::vector<std::string>{"<eos>", "the", "cat", "dog", "end", "sat", "zebra"});
  CHECK(all.unknown() == -1);
  const std::vector<std::int32_t> ids = all.encode(text, "w.txt");
  CHECK(ids == std::vector<std::int32_t>{1, 2, 5, 0, 1, 3, 0, 1, 4, 0, 6, 0});
  CHECK(all.decode(ids) == "the cat sat\nthe dog\nthe end\nzebra\n");
  CHECK_THAT(message_of([&] { (void)all.encode("the cow", "valid.txt"); }),
             Catch::Contains("'valid.txt': word 'cow' at byte offset 4 is not in the model's vocabulary"));

  // 4 symbols in all: the 3 most frequent and <unk>.
  const Vocabulary small = Vocabulary::of(TokenMode::words, {text}, {"w.txt"}, 4);
  CHECK(small.symbols == std::vector<std::string>{"<eos>", "the", "cat", "<unk>"});
  CHECK(small.unknown() == 3);
  std::int64_t as_unknown = 0;
  CHECK(small.encode("the cow sat\n", "valid.txt", {.as_unknown = &as_unknown}) ==
        std::vector<std::int32_t>{1, 3, 3, 0});
  CHECK(as_unknown == 2);
  CHECK(small.decode(small.encode("the cow sat\n", "valid.txt")) == "the <unk> <unk>\n");
  // A prime is not a file: no <eos> after its unfinished last line.
  CHECK(small.encode("the cat", "--prime", {.final_eos = false}) == std::vector<std::int32_t>{1, 2});
  // A text that already holds <unk> (Penn Treebank does) keeps one.
  const Vocabulary ptb = Vocabulary::of(TokenMode::words, {std::string("a <unk> b <unk>\n")}, {"p"}, 2);
  CHECK(ptb.symbols == std::vector<std::string>{"<unk>", "<eos>"});
  // A cap the text does not reach adds nothing.
  CHECK(Vocabulary::of(TokenMode::words, {text}, {"w.txt"}, 7).symbols == all.symbols);
}

TEST_CASE("words are Python's str.split() of each line, with universal newlines", "[tokens]") {
  // Python: 'a\u00a0b c\x1cd'.split() == ['a', 'b', 'c', 'd']; a lone \r ends a line (universal newlines).
  const std::string text =
      "a\u00a0b c\x1c"
      "d\u3000e\x0b"
      "f\rg\r\nh\u2028i\n";
  const Vocabulary v = Vocabulary::of(TokenMode::words, {text}, {"w.txt"});
  CHECK(v.decode(v.encode(text, "w.txt")) == "a b c d e f\ng\nh i\n");
  CHECK(v.size() == 10);  // a..i and <eos>
  // Not spaces to Python: the zero-width space and the word joiner stay inside words.
  const std::string joined = "x\u200by\u2060z\n";
  CHECK(Vocabulary::of(TokenMode::words, {joined}, {"j"}).size() == 2);
}

TEST_CASE("held-out symbols the training text lacks are read as <unk> in every mode, and counted",
          "[tokens]") {
  for (const TokenMode mode : {TokenMode::bytes, TokenMode::chars, TokenMode::words}) {
    Vocabulary v = Vocabulary::of(mode, {std::string("ab ba\n")}, {"train"});
    const std::int64_t before = v.size();
    CHECK(v.cover("ab ba\n", "same") == 0);
    CHECK(v.size() == before);
    CHECK(v.unknown() == -1);
    CHECK(v.cover("ab cd\n", "valid") == (mode == TokenMode::words ? 1 : 2));
    CHECK(v.size() == before + 1);
    CHECK(v.unknown() == before);  // appended: the training ids stay
    std::int64_t as_unknown = 0;
    const std::vector<std::int32_t> ids = v.encode("abc\n", "test", {.as_unknown = &as_unknown});
    CHECK(as_unknown == 1);
    CHECK(v.decode(ids) == (mode == TokenMode::words ? "<unk>\n" : "ab<unk>\n"));
  }
  // Under a cap the least frequent word makes room for <unk>: still N symbols in all.
  Vocabulary capped = Vocabulary::of(TokenMode::words, {std::string("a a b\n")}, {"train"}, 3);
  CHECK(capped.symbols == std::vector<std::string>{"a", "<eos>", "b"});
  CHECK(capped.cover("c\n", "valid", 3) == 1);
  CHECK(capped.symbols == std::vector<std::string>{"a", "<eos>", "<unk>"});
}

TEST_CASE("words: the vocabulary counts every text it is given, deterministically", "[tokens]") {
  const Vocabulary a =
      Vocabulary::of(TokenMode::words, {std::string("b a\n"), std::string("c c\n")}, {"x", "y"}, 0);
  const Vocabulary b =
      Vocabulary::of(TokenMode::words, {std::string("b a\n"), std::string("c c\n")}, {"x", "y"}, 0);
  CHECK(a.symbols == b.symbols);
  CHECK(a.symbols == std::vector<std::string>{"<eos>", "c", "a", "b"});
}

TEST_CASE("token files: written and mapped back, uint16 and uint32 little-endian", "[tokens]") {
  TempDir dir;
  const std::vector<std::int32_t> ids = {0, 1, 258, 65535, 7, 3};
  trainers::write_token_file(dir.file("a16.bin"), ids, trainers::TokenDType::uint16);
  CHECK(fs::file_size(dir.file("a16.bin")) == 12);
  {
    std::ifstream in(dir.file("a16.bin"), std::ios::binary);
    std::vector<unsigned char> bytes(12);
    in.read(reinterpret_cast<char*>(bytes.data()), 12);
    CHECK(bytes[4] == 2);  // 258 = 0x0102, low byte first
    CHECK(bytes[5] == 1);
  }
  const trainers::TokenFile f16(dir.file("a16.bin"), trainers::TokenDType::uint16, 65536);
  const std::vector<std::int32_t> big = {70000, 1, 2};
  trainers::write_token_file(dir.file("a32.bin"), big, trainers::TokenDType::uint32);
  const trainers::TokenFile f32(dir.file("a32.bin"), trainers::TokenDType::uint32, 70001);
  REQUIRE(f16.size() == 6);
  for (std::int64_t i = 0; i < 6; ++i) CHECK(f16[i] == ids[static_cast<std::size_t>(i)]);
  CHECK(f32[0] == 70000);
  CHECK_THAT(
      message_of([&] { trainers::write_token_file(dir.file("x.bin"), big, trainers::TokenDType::uint16); }),
      Catch::Contains("id 70000 does not fit uint16"));
  CHECK_FALSE(fs::exists(dir.file("x.bin")));
}

TEST_CASE("token files: a size off the width or an id past the vocabulary is refused by file and offset",
          "[tokens]") {
  TempDir dir;
  {
    std::ofstream out(dir.file("odd.bin"), std::ios::binary);
    out.write("\x01\x00\x02", 3);
  }
  CHECK_THAT(message_of([&] { trainers::TokenFile(dir.file("odd.bin"), trainers::TokenDType::uint16, 10); }),
             Catch::Contains("odd.bin': 3 bytes is not a multiple of 2"));
  trainers::write_token_file(dir.file("ids.bin"), std::vector<std::int32_t>{1, 2, 9, 10, 3},
                             trainers::TokenDType::uint32);
  CHECK_THAT(message_of([&] { trainers::TokenFile(dir.file("ids.bin"), trainers::TokenDType::uint32, 10); }),
             Catch::Contains("ids.bin': token 3 (byte offset 12) is 10, not below the vocabulary size 10"));
  {  // past 2^31: not a negative id slipping through as "no target"
    std::ofstream out(dir.file("huge.bin"), std::ios::binary);
    out.write("\x01\x00\x00\x00\xff\xff\xff\xff", 8);
  }
  CHECK_THAT(
      message_of([&] { trainers::TokenFile(dir.file("huge.bin"), trainers::TokenDType::uint32, 10); }),
      Catch::Contains("huge.bin': token 1 (byte offset 4) is 4294967295, not below the vocabulary size 10"));
  CHECK_THAT(message_of([&] { trainers::TokenFile(dir.file("none.bin"), trainers::TokenDType::uint32, 10); }),
             Catch::Contains("cannot open data file") && Catch::Contains("none.bin"));
  CHECK_THAT(
      message_of([&] { trainers::TokenFile(dir.file("ids.bin"), trainers::TokenDType::uint16, 70000); }),
      Catch::Contains("use --token-dtype uint32"));
}

TEST_CASE("token file streams see exactly the steps of the same ids held in memory", "[tokens]") {
  TempDir dir;
  std::vector<std::int32_t> ids;
  for (int i = 0; i < 103; ++i) ids.push_back((i * 7 + i / 5) % 11);
  trainers::write_token_file(dir.file("s.bin"), ids, trainers::TokenDType::uint16);
  auto file =
      std::make_shared<const trainers::TokenFile>(dir.file("s.bin"), trainers::TokenDType::uint16, 11);
  const trainers::TokenFileStreams mapped(file, 0, 90, 4);
  const auto held = trainers::text_streams({ids.begin(), ids.begin() + 90}, 11, 4);
  REQUIRE(mapped.steps() == held->steps());
  CHECK(mapped.vocab_size() == 11);
  for (std::int64_t t = 0; t < mapped.steps(); ++t) {
    const trainers::Step a = mapped.step(t), b = held->step(t);
    CHECK(std::vector<std::int32_t>(a.tokens.begin(), a.tokens.end()) ==
          std::vector<std::int32_t>(b.tokens.begin(), b.tokens.end()));
    CHECK(std::vector<std::int32_t>(a.target_tokens.begin(), a.target_tokens.end()) ==
          std::vector<std::int32_t>(b.target_tokens.begin(), b.target_tokens.end()));
    CHECK(a.reset.empty());
  }
  // A held-out tail as its own streams.
  const trainers::TokenFileStreams tail(file, 90, 103, 2);
  CHECK(tail.step(0).tokens[0] == ids[90]);
  CHECK(tail.step(0).target_tokens[1] == ids[90 + tail.steps() + 1]);
  CHECK_THAT(message_of([&] { trainers::TokenFileStreams(file, 100, 103, 4); }),
             Catch::Contains("3 tokens are too few for 4 streams"));
}

TEST_CASE("a token file is read in place: no copy on the heap, no allocation per step, flat resident memory",
          "[tokens][memory]") {
  TempDir dir;
  // 32 MiB of uint32 ids, written a block at a time so the test itself holds no copy either.
  constexpr std::int64_t tokens = 8 << 20, block = 1 << 16;
  {
    std::vector<std::int32_t> ids(block);
    for (std::int64_t i = 0; i < block; ++i)
      ids[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i % 1000);
    std::FILE* f = std::fopen(dir.file("big.bin").c_str(), "wb");
    REQUIRE(f != nullptr);
    for (std::int64_t done = 0; done < tokens; done += block) std::fwrite(ids.data(), 4, ids.size(), f);
    std::fclose(f);
  }
  const std::int64_t anonymous_before = resident_bytes("RssAnon"), file_before = resident_bytes("RssFile");
  const std::size_t allocations_before = test::heap_allocations();
  auto file =
      std::make_shared<const trainers::TokenFile>(dir.file("big.bin"), trainers::TokenDType::uint32, 1000);
  // Opening reads every id once (the vocabulary check) and drops each checked chunk from the resident set.
  if (file_before >= 0) CHECK(resident_bytes("RssFile") - file_before < (8 << 20));
  const trainers::TokenFileStreams streams(file, 0, file->size(), 16);
  const std::size_t allocations_opened = test::heap_allocations();
  std::int64_t sum = 0;
  for (std::int64_t t = 0; t < streams.steps(); ++t) sum += streams.step(t).target_tokens[15];
  CHECK(sum > 0);
  CHECK(test::heap_allocations() == allocations_opened);  // stepping allocates nothing
  CHECK(allocations_opened - allocations_before < 16);    // opening: a few small objects, whatever the size
  if (anonymous_before >= 0) {  // Linux: neither the heap nor the mapped pages grew with the 32 MiB file
    CHECK(resident_bytes("RssAnon") - anonymous_before < (8 << 20));
    CHECK(resident_bytes("RssFile") - file_before < (8 << 20));
  }
}
