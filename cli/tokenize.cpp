// rewind tokenize: text to a token file (flat little-endian ids, nanoGPT's train.bin layout) and its
// vocabulary, with the tokenisation of rewind train --tokens. See docs/data.md.
#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>

#include "commands.hpp"
#include "parse.hpp"
#include "rewind/models/atomic_file.hpp"
#include "rewind/trainers/tokens.hpp"
#include "run_config.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace rwd::cli {

int run_tokenize(int argc, const char* const* argv) {
  std::string data, out, tokens = "bytes", dtype_name, vocab_in, vocab_out;
  std::int64_t vocab_size = 0;
  po::options_description options("rewind tokenize options");
  options.add_options()("help,h", "show this help")("data", po::value(&data)->required(),
                                                    "text file to read")("out", po::value(&out)->required(),
                                                                         "token file to write")(
      "tokens", po::value(&tokens)->default_value(tokens), "bytes, chars or words, as rewind train --tokens")(
      "vocab-size", po::value(&vocab_size), "words: keep the N most frequent (the rest: <unk>)")(
      "vocab", po::value(&vocab_in),
      "use this vocabulary file instead of building one (validation and test files: the training one's)")(
      "vocab-out", po::value(&vocab_out), "where the vocabulary goes (default: OUT with .vocab.json)")(
      "token-dtype", po::value(&dtype_name), "uint16 or uint32 (default: uint16 when the vocabulary fits)");
  po::variables_map vm;
  if (!parse_command_line(
          argc, argv, options, vm,
          "usage: rewind tokenize --data FILE.txt --out FILE.bin [--tokens bytes|chars|words] "
          "[--vocab-size N | --vocab VOCAB.json]"))
    return 0;
  trainers::Vocabulary vocabulary;
  if (!vocab_in.empty()) {
    if (vm.count("vocab-size")) throw std::invalid_argument("give --vocab or --vocab-size, not both");
    vocabulary = read_vocabulary(vocab_in);
    if (!vm["tokens"].defaulted() && vocabulary.mode != trainers::token_mode(tokens))
      throw std::invalid_argument("--tokens " + tokens + " does not match the vocabulary file '" + vocab_in +
                                  "' (" + trainers::name_of(vocabulary.mode) + ")");
  }
  const std::string text = read_file(data);
  if (vocab_in.empty()) {
    const trainers::TokenMode mode = trainers::token_mode(tokens);
    if (vm.count("vocab-size") && mode != trainers::TokenMode::words)
      throw std::invalid_argument("--vocab-size applies to --tokens words");
    vocabulary = trainers::Vocabulary::of(mode, {text}, {data}, vocab_size);
  }
  const trainers::TokenDType dtype =
      dtype_name.empty()
          ? (vocabulary.size() <= 65536 ? trainers::TokenDType::uint16 : trainers::TokenDType::uint32)
          : trainers::token_dtype(dtype_name);
  if (dtype == trainers::TokenDType::uint16 && vocabulary.size() > 65536)
    throw std::invalid_argument("--token-dtype uint16 holds at most 65536 symbols, the vocabulary has " +
                                std::to_string(vocabulary.size()));
  // Everything is checked before the first file is written.
  const std::vector<std::int32_t> ids = vocabulary.encode(text, data);
  if (vocab_out.empty() && vocab_in.empty())
    vocab_out = fs::path(out).replace_extension(".vocab.json").string();
  if (!vocab_out.empty() && fs::absolute(vocab_out) == fs::absolute(out))
    throw std::invalid_argument("--vocab-out is the token file '" + out + "'");
  trainers::write_token_file(out, ids, dtype);
  if (!vocab_out.empty()) {
    const std::string json = vocabulary_json(vocabulary);
    models::write_file_atomically(
        vocab_out,
        [&](std::FILE* f) {
          if (std::fwrite(json.data(), 1, json.size(), f) != json.size())
            throw std::runtime_error("vocabulary file '" + vocab_out + "': write failed");
        },
        "vocabulary file");
  }
  std::printf("wrote %s: %zu tokens (%s), vocabulary of %lld (%s)%s\n", out.c_str(), ids.size(),
              trainers::name_of(dtype), static_cast<long long>(vocabulary.size()),
              trainers::name_of(vocabulary.mode), vocab_out.empty() ? "" : (" in " + vocab_out).c_str());
  std::printf("train on it with: rewind train --data %s --token-dtype %s --vocab %s\n",
              shell_quote(out).c_str(), trainers::name_of(dtype),
              shell_quote(vocab_out.empty() ? vocab_in : vocab_out).c_str());
  return 0;
}

}  // namespace rwd::cli
