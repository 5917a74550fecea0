#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "helpers.hpp"
#include "plugin_fixtures.hpp"
#include "rewind/models/safetensors.hpp"

using namespace rwd;
using autodiff::DType;
using autodiff::Shape;
using autodiff::Tensor;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {
fs::path scratch_dir() {
  const fs::path dir = fs::temp_directory_path() / ("rewind_safetensors_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}
std::string read_bytes(const fs::path& f) {
  std::ifstream in(f, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}
void write_bytes(const fs::path& f, const std::string& bytes) {
  std::ofstream(f, std::ios::binary) << bytes;
}
std::string header_file(const std::string& json, const std::string& data) {
  std::string out(8, '\0');
  const std::uint64_t n = json.size();
  std::memcpy(out.data(), &n, 8);
  return out + json + data;
}
models::ModelConfig config() {
  models::ModelConfig c;
  c.vocab_size = 6;
  c.hidden_size = 4;
  c.layers = 2;
  return c;
}
}  // namespace

TEST_CASE("a model's parameters round-trip through safetensors bit for bit", "[safetensors]") {
  const fs::path dir = scratch_dir();
  auto a = test::make_model("lstm", config(), true);
  models::save_parameters(dir / "model.safetensors", *a);
  auto c = config();
  c.seed = 99;
  auto b = test::make_model("lstm", c, true);
  models::load_parameters(dir / "model.safetensors", *b);
  for (std::size_t i = 0; i < a->parameters().size(); ++i)
    CHECK(std::memcmp(a->parameters()[i]->value().raw(), b->parameters()[i]->value().raw(),
                      a->parameters()[i]->value().bytes()) == 0);
  std::map<std::string, std::string> metadata;
  const models::TensorMap loaded = models::load_safetensors(dir / "model.safetensors", &metadata);
  CHECK(metadata.at("format") == "pt");
  CHECK(loaded.at("rnn.bias_hh_l1").shape() == Shape::vector(16));
  CHECK(read_bytes(dir / "model.safetensors").substr(8, 1) == "{");
  fs::remove_all(dir);
}

TEST_CASE("a file as Python's safetensors writes it loads", "[safetensors]") {
  // Written by hand from the format description: the header of torch's save_file for {"w": [2, 2] F32,
  // "b": [2] F64} with the "pt" metadata, offsets relative to the data section.
  const fs::path dir = scratch_dir();
  const float w[] = {1, 2, 3, 4};
  const double b[] = {-1, 0.5};
  std::string data(reinterpret_cast<const char*>(b), sizeof b);
  data += std::string(reinterpret_cast<const char*>(w), sizeof w);
  write_bytes(
      dir / "torch.safetensors",
      header_file(R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},)"
                  R"("w":{"dtype":"F32","shape":[2,2],"data_offsets":[16,32]}}  )",
                  data));
  const models::TensorMap t = models::load_safetensors(dir / "torch.safetensors");
  CHECK(t.at("w").shape() == Shape::matrix(2, 2));
  CHECK(t.at("w").at(1, 0) == 3.0f);
  CHECK(t.at("b").dtype() == DType::f64);
  CHECK(t.at("b").get(1) == 0.5);
  fs::remove_all(dir);
}

TEST_CASE("broken safetensors files get a message naming the file and the problem", "[safetensors]") {
  const fs::path dir = scratch_dir();
  const fs::path f = dir / "bad.safetensors";
  CHECK_THROWS_WITH(models::load_safetensors(dir / "none.safetensors"),
                    Contains("none.safetensors': cannot open file"));
  write_bytes(f, "abc");
  CHECK_THROWS_WITH(models::load_safetensors(f), Contains("bad.safetensors': truncated: 3 bytes"));
  write_bytes(f, header_file("{\"w\": ", ""));
  CHECK_THROWS_WITH(models::load_safetensors(f), Contains("corrupt header"));
  write_bytes(f, std::string("\xff\xff\xff\xff\x00\x00\x00\x00", 8) + "{}");
  CHECK_THROWS_WITH(models::load_safetensors(f),
                    Contains("header length 4294967295 exceeds the file (10 bytes)"));
  write_bytes(
      f, header_file(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, '\0')));
  CHECK_THROWS_WITH(models::load_safetensors(f),
                    Contains("tensor 'w': data_offsets outside the 8 bytes of data (truncated file?)"));
  // Reversed offsets: the end before the start, both inside the data.
  write_bytes(f,
              header_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", std::string(8, '\0')));
  CHECK_THROWS_WITH(models::load_safetensors(f),
                    Contains("tensor 'w': data_offsets [8, 4] end before they begin"));
  write_bytes(
      f, header_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", std::string(16, '\0')));
  CHECK_THROWS_WITH(models::load_safetensors(f),
                    Contains("tensor 'w': 16 bytes of data for shape [3] F32 (12 bytes)"));
  write_bytes(
      f, header_file(R"({"w":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}})", std::string(2, '\0')));
  CHECK_THROWS_WITH(models::load_safetensors(f), Contains("tensor 'w': dtype BF16 is not supported"));
  write_bytes(
      f, header_file(R"({"w":{"dtype":"F32","shape":[1,1,1],"data_offsets":[0,4]}})", std::string(4, '\0')));
  CHECK_THROWS_WITH(models::load_safetensors(f), Contains("tensor 'w': rank 3 is not supported"));
  write_bytes(f, header_file(R"({"w":{"dtype":"F32"}})", ""));
  CHECK_THROWS_WITH(models::load_safetensors(f), Contains("tensor 'w': corrupt header entry"));
  fs::remove_all(dir);
}

TEST_CASE("loading into a model lists every mismatch and changes nothing", "[safetensors]") {
  const fs::path dir = scratch_dir();
  auto model = test::make_model("gru", config(), true);
  const Tensor before = model->parameter("head.weight").value();
  auto other_config = config();
  other_config.hidden_size = 5;
  other_config.layers = 1;
  models::save_parameters(dir / "other.safetensors", *test::make_model("gru", other_config, true));
  try {
    models::load_parameters(dir / "other.safetensors", *model);
    FAIL("no error");
  } catch (const models::SafetensorsError& e) {
    const std::string m = e.what();
    CHECK_THAT(m, Contains("other.safetensors' does not match the model"));
    CHECK_THAT(m, Contains("'rnn.weight_hh_l0': file has [15, 5], model has [12, 4]"));
    CHECK_THAT(m, Contains("missing 'rnn.weight_ih_l1' [12, 4]"));
    CHECK_THAT(m, Contains("'embedding.weight': file has [6, 5], model has [6, 4]"));
  }
  CHECK(std::memcmp(model->parameter("head.weight").value().raw(), before.raw(), before.bytes()) == 0);

  auto f64 = config();
  f64.dtype = DType::f64;
  models::save_parameters(dir / "f64.safetensors", *test::make_model("gru", f64, true));
  CHECK_THROWS_WITH(models::load_parameters(dir / "f64.safetensors", *model),
                    Contains("'head.bias': file has F64, model has F32"));
  models::save_safetensors(dir / "extra.safetensors", {{"optimizer.step", &before}});
  CHECK_THROWS_WITH(models::load_parameters(dir / "extra.safetensors", *model),
                    Contains("unexpected 'optimizer.step' [6, 4]"));
  fs::remove_all(dir);
}

TEST_CASE("a failed save leaves the existing file untouched and no temporary behind", "[safetensors]") {
  const fs::path dir = scratch_dir();
  const Tensor t = test::random_tensor(Shape::matrix(2, 2), DType::f32, 1);
  models::save_safetensors(dir / "keep.safetensors", {{"t", &t}});
  const std::string original = read_bytes(dir / "keep.safetensors");
  CHECK_THROWS_WITH(models::save_safetensors(dir / "keep.safetensors", {{"t", &t}, {"t", &t}}),
                    Contains("duplicate or reserved tensor name 't'"));
  fs::create_directories(dir / "occupied.safetensors");
  CHECK_THROWS_WITH(models::save_safetensors(dir / "occupied.safetensors", {{"t", &t}}),
                    Contains("cannot rename into place"));
  CHECK(read_bytes(dir / "keep.safetensors") == original);
  std::size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  CHECK(files == 1);
  fs::remove_all(dir);
}

TEST_CASE("hostile safetensors headers are refused before anything is allocated", "[safetensors]") {
  const fs::path dir = scratch_dir();
  const fs::path f = dir / "hostile.safetensors";
  // 80 GB claimed for 8 bytes of data.
  write_bytes(f, header_file(R"({"w":{"dtype":"F64","shape":[100000,100000],"data_offsets":[0,8]}})",
                             std::string(8, '\0')));
  CHECK_THROWS_WITH(models::load_safetensors(f),
                    Contains("8 bytes of data for shape [100000, 100000] F64 (80000000000 bytes)"));
  // A size that wraps around 2^64 to 0.
  write_bytes(f,
              header_file(R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})", ""));
  CHECK_THROWS_WITH(models::load_safetensors(f), Contains("(more than 2^64 bytes)"));
  write_bytes(
      f, header_file(R"({"w":{"dtype":"F32","shape":[1e300],"data_offsets":[0,4]}})", std::string(4, '\0')));
  CHECK_THROWS_WITH(models::load_safetensors(f),
                    Contains("shape entries must be non-negative integers, got 1e+300"));
  write_bytes(
      f, header_file(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,4]}})", std::string(4, '\0')));
  CHECK_THROWS_WITH(models::load_safetensors(f),
                    Contains("shape entries must be non-negative integers, got -2"));
  fs::remove_all(dir);
}
