// rewind tokenize: text to a token file (flat little-endian ids, nanoGPT's train.bin layout) and its
// vocabulary, with the tokenisation of rewind train --tokens. See docs/data.md.
#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>

#include "commands.hpp"
#include "parse.hpp"
#include "rewind/models/atomic_file.hpp"
#include "rewind/runtime/run_config.hpp"
#include "rewind/trainers/tokens.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace rwd::cli {
using namespace rwd::runtime;  // RunConfig and the data and models it rebuilds

int run_tokenize(int argc, const char* const* argv) {
  std::string data, out, tokens = "bytes", dtype_name, vocab_in, vocab_out, val_data, val_out, test_data,
                         test_out;
  std::int64_t vocab_size = 0;
  po::options_description options("rewind tokenize options");
  options.add_options()("help,h", "show this help")("data", po::value(&data)->required(),
                                                    "text file to read")("out", po::value(&out)->required(),
                                                                         "token file to write")(
      "tokens", po::value(&tokens)->default_value(tokens), "bytes, chars or words, as rewind train --tokens")(
      "vocab-size", po::value(&vocab_size),
      "words: N symbols in all, the N - 1 most frequent and <unk> for the rest")(
      "vocab", po::value(&vocab_in),
      "use this vocabulary file instead of building one (validation and test files: the training one's)")(
      "vocab-out", po::value(&vocab_out), "where the vocabulary goes (default: OUT with .vocab.json)")(
      "token-dtype", po::value(&dtype_name), "uint16 or uint32 (default: uint16 when the vocabulary fits)")(
      "val-data", po::value(&val_data),
      "validation text, with the training text's vocabulary (symbols it lacks: <unk>)")(
      "val-out", po::value(&val_out), "its token file (default: --val-data with .bin)")(
      "test-data", po::value(&test_data), "test text, the same way")(
      "test-out", po::value(&test_out), "its token file (default: --test-data with .bin)");
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
  // Training first: the vocabulary comes from it, as rewind train builds it.
  std::vector<std::string> files = {data}, outs = {out}, texts;
  const auto add = [&](const std::string& file, const std::string& to) {
    if (file.empty()) return;
    files.push_back(file);
    outs.push_back(to.empty() ? fs::path(file).replace_extension(".bin").string() : to);
  };
  add(val_data, val_out);
  add(test_data, test_out);
  for (const std::string& f : files) texts.push_back(read_file(f));
  if (vocab_in.empty()) {
    const trainers::TokenMode mode = trainers::token_mode(tokens);
    if (vm.count("vocab-size") && mode != trainers::TokenMode::words)
      throw std::invalid_argument("--vocab-size applies to --tokens words");
    vocabulary = vocabulary_of(mode, vocab_size, files, texts);
  }
  const trainers::TokenDType dtype =
      dtype_name.empty()
          ? (vocabulary.size() <= 65536 ? trainers::TokenDType::uint16 : trainers::TokenDType::uint32)
          : trainers::token_dtype(dtype_name);
  if (dtype == trainers::TokenDType::uint16 && vocabulary.size() > 65536)
    throw std::invalid_argument("--token-dtype uint16 holds at most 65536 symbols, the vocabulary has " +
                                std::to_string(vocabulary.size()));
  if (vocab_out.empty() && vocab_in.empty())
    vocab_out = fs::path(out).replace_extension(".vocab.json").string();
  // Everything is checked before the first file is written.
  std::vector<std::string> written = outs;
  if (!vocab_out.empty()) written.push_back(vocab_out);
  for (std::size_t i = 0; i < written.size(); ++i)
    for (std::size_t j = 0; j < files.size() + i; ++j)
      if (fs::absolute(written[i]).lexically_normal() ==
          fs::absolute(j < files.size() ? files[j] : written[j - files.size()]).lexically_normal())
        throw std::invalid_argument("'" + written[i] + "' would be written over an input or another output");
  std::vector<std::vector<std::int32_t>> ids;
  std::vector<std::int64_t> as_unknown(files.size());
  for (std::size_t i = 0; i < files.size(); ++i)
    ids.push_back(vocabulary.encode(texts[i], files[i], {.as_unknown = &as_unknown[i]}));
  for (std::size_t i = 0; i < files.size(); ++i) trainers::write_token_file(outs[i], ids[i], dtype);
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
  for (std::size_t i = 0; i < files.size(); ++i)
    std::printf("wrote %s: %zu tokens (%s)%s\n", outs[i].c_str(), ids[i].size(), trainers::name_of(dtype),
                as_unknown[i] > 0 ? (", " + std::to_string(as_unknown[i]) + " of them <unk>").c_str() : "");
  std::printf("vocabulary of %lld (%s)%s\n", static_cast<long long>(vocabulary.size()),
              trainers::name_of(vocabulary.mode), vocab_out.empty() ? "" : (" in " + vocab_out).c_str());
  std::printf("train on it with: rewind train --data %s --token-dtype %s --vocab %s%s\n",
              shell_quote(out).c_str(), trainers::name_of(dtype),
              shell_quote(vocab_out.empty() ? vocab_in : vocab_out).c_str(),
              files.size() > 1 && !val_data.empty() ? (" --val-data " + shell_quote(outs[1])).c_str() : "");
  return 0;
}

}  // namespace rwd::cli
