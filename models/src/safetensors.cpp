#include "rewind/models/safetensors.hpp"

#include "rewind/models/atomic_file.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstdlib>

#include <bit>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

namespace rwd::models {
namespace fs = std::filesystem;
using json = nlohmann::json;

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

namespace {

constexpr std::uint64_t max_header_bytes = 100u << 20;  // the reference implementation's limit

const char* dtype_name(DType t) {
  return t == DType::f32 ? "F32" : "F64";
}

json shape_json(autodiff::Shape s) {
  if (s.rank == 0) return json::array();
  if (s.rank == 1) return json::array({s.cols});
  return json::array({s.rows, s.cols});
}

std::string reason() {
  return std::strerror(errno);
}

void write_all(std::FILE* f, const void* data, std::size_t bytes, const fs::path& file) {
  if (bytes != 0 && std::fwrite(data, 1, bytes, f) != bytes)
    throw SafetensorsError("safetensors '" + file.string() + "': write failed: " + reason());
}

}  // namespace

// Integrity (docs/models.md): the metadata holds an XXH64 of every tensor's bytes ("rewind.xxh64.NAME") and
// one of the header itself as dumped without that key ("rewind.header_xxh64"); files without them (written
// by PyTorch or other tools) load unchecked.
constexpr const char* tensor_checksum_prefix = "rewind.xxh64.";
constexpr const char* header_checksum_key = "rewind.header_xxh64";

std::string xxh64_hex(const void* data, std::size_t bytes) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(XXH64(data, bytes, 0)));
  return hex;
}

void save_safetensors(const fs::path& file, const std::vector<std::pair<std::string, const Tensor*>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  std::map<std::string, std::string> checked = metadata;
  for (const auto& [name, tensor] : tensors)
    checked[tensor_checksum_prefix + name] = xxh64_hex(tensor->raw(), tensor->bytes());
  header["__metadata__"] = checked;
  std::uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__" || header.contains(name))
      throw SafetensorsError("safetensors '" + file.string() + "': duplicate or reserved tensor name '" +
                             name + "'");
    header[name] = {{"dtype", dtype_name(tensor->dtype())},
                    {"shape", shape_json(tensor->shape())},
                    {"data_offsets", {offset, offset + tensor->bytes()}}};
    offset += tensor->bytes();
  }
  const std::string unchecked = header.dump();
  header["__metadata__"][header_checksum_key] = xxh64_hex(unchecked.data(), unchecked.size());
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned, as the reference writer does
  const std::uint64_t length = text.size();

  try {
    write_file_atomically(
        file,
        [&](std::FILE* f) {
          write_all(f, &length, sizeof length, file);
          write_all(f, text.data(), text.size(), file);
          for (const auto& entry : tensors) write_all(f, entry.second->raw(), entry.second->bytes(), file);
        },
        "safetensors");
  } catch (const SafetensorsError&) {
    throw;
  } catch (const std::runtime_error& e) {
    throw SafetensorsError(e.what());
  }
}

TensorMap load_safetensors(const fs::path& file, std::map<std::string, std::string>* metadata) {
  const std::string where = "safetensors '" + file.string() + "'";
  std::ifstream in(file, std::ios::binary);
  if (!in) throw SafetensorsError(where + ": cannot open file: " + reason());
  in.seekg(0, std::ios::end);
  const auto size = static_cast<std::uint64_t>(in.tellg());
  in.seekg(0);
  std::uint64_t length = 0;
  if (size < 8 || !in.read(reinterpret_cast<char*>(&length), 8))
    throw SafetensorsError(where + ": truncated: " + std::to_string(size) +
                           " bytes, shorter than the 8-byte header length");
  if (length > max_header_bytes || length > size - 8)
    throw SafetensorsError(where + ": header length " + std::to_string(length) + " exceeds the file (" +
                           std::to_string(size) + " bytes)");
  std::string text(length, '\0');
  in.read(text.data(), static_cast<std::streamsize>(length));
  json header;
  try {
    header = json::parse(text);
  } catch (const json::exception& e) {
    throw SafetensorsError(where + ": corrupt header: " + e.what());
  }
  if (!header.is_object()) throw SafetensorsError(where + ": corrupt header: not a JSON object");
  const std::uint64_t data_bytes = size - 8 - length;
  std::map<std::string, std::string> checksums;  // tensor name -> XXH64, when the writer stored them
  if (header.contains("__metadata__") && header["__metadata__"].is_object()) {
    json& meta = header["__metadata__"];
    if (meta.contains(header_checksum_key)) {
      const json stored = meta[header_checksum_key];
      meta.erase(header_checksum_key);
      const std::string unchecked = header.dump();
      if (!stored.is_string() || stored.get<std::string>() != xxh64_hex(unchecked.data(), unchecked.size()))
        throw SafetensorsError(where +
                               ": the header does not match its checksum (damaged: bit rot, a partial "
                               "write or an edit)");
    }
    for (auto it = meta.begin(); it != meta.end();) {
      if (it.key().rfind(tensor_checksum_prefix, 0) == 0 && it.value().is_string()) {
        checksums[it.key().substr(std::strlen(tensor_checksum_prefix))] = it.value().get<std::string>();
        it = meta.erase(it);
      } else {
        ++it;
      }
    }
  }

  TensorMap out;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (metadata != nullptr && entry.is_object())
        for (const auto& [k, v] : entry.items())
          if (v.is_string()) (*metadata)[k] = v.get<std::string>();
      continue;
    }
    const std::string what = where + ": tensor '" + name + "'";
    try {
      const std::string dtype = entry.at("dtype").get<std::string>();
      if (dtype != "F32" && dtype != "F64")
        throw SafetensorsError(what + ": dtype " + dtype + " is not supported (F32 or F64)");
      for (const json& d : entry.at("shape"))
        if (!d.is_number_integer() || d.get<std::int64_t>() < 0)
          throw SafetensorsError(what + ": shape entries must be non-negative integers, got " + d.dump());
      for (const json& o : entry.at("data_offsets"))
        if (!o.is_number_integer() || o.get<std::int64_t>() < 0)
          throw SafetensorsError(what + ": data_offsets must be non-negative integers, got " + o.dump());
      const auto shape = entry.at("shape").get<std::vector<std::int64_t>>();
      const auto offsets = entry.at("data_offsets").get<std::vector<std::uint64_t>>();
      if (shape.size() > 2)
        throw SafetensorsError(what + ": rank " + std::to_string(shape.size()) +
                               " is not supported (at most 2)");
      if (offsets.size() != 2)
        throw SafetensorsError(what + ": data_offsets must be [begin, end], got " +
                               entry.at("data_offsets").dump());
      if (offsets[0] > offsets[1])
        throw SafetensorsError(what + ": data_offsets [" + std::to_string(offsets[0]) + ", " +
                               std::to_string(offsets[1]) + "] end before they begin");
      if (offsets[1] > data_bytes)
        throw SafetensorsError(what + ": data_offsets outside the " + std::to_string(data_bytes) +
                               " bytes of data (truncated file?)");
      const autodiff::Shape s = shape.empty()       ? autodiff::Shape::scalar()
                                : shape.size() == 1 ? autodiff::Shape::vector(shape[0])
                                                    : autodiff::Shape::matrix(shape[0], shape[1]);
      const DType type = dtype == "F32" ? DType::f32 : DType::f64;
      // The size the shape claims, checked for overflow and against the data before anything is allocated.
      std::uint64_t elements = 0, bytes = 0;
      const bool overflow = __builtin_mul_overflow(static_cast<std::uint64_t>(s.rows),
                                                   static_cast<std::uint64_t>(s.cols), &elements) ||
                            __builtin_mul_overflow(elements, autodiff::size_of(type), &bytes);
      if (overflow || offsets[1] - offsets[0] != bytes)
        throw SafetensorsError(what + ": " + std::to_string(offsets[1] - offsets[0]) +
                               " bytes of data for shape " + s.str() + " " + dtype + " (" +
                               (overflow ? std::string("more than 2^64") : std::to_string(bytes)) +
                               " bytes)");
      Tensor t(s, type);
      in.seekg(static_cast<std::streamoff>(8 + length + offsets[0]));
      if (!in.read(static_cast<char*>(t.raw()), static_cast<std::streamsize>(t.bytes())))
        throw SafetensorsError(what + ": data could not be read");
      if (const auto sum = checksums.find(name);
          sum != checksums.end() && sum->second != xxh64_hex(t.raw(), t.bytes()))
        throw SafetensorsError(what +
                               ": the data does not match its checksum (damaged: bit rot or a partial "
                               "write)");
      out.emplace(name, std::move(t));
    } catch (const json::exception& e) {
      throw SafetensorsError(what + ": corrupt header entry: " + e.what());
    }
  }
  return out;
}

std::vector<std::pair<std::string, const Tensor*>> parameter_tensors(Model& model) {
  std::vector<std::pair<std::string, const Tensor*>> tensors;
  for (Parameter* p : model.parameters()) tensors.emplace_back(p->name(), &p->value());
  return tensors;
}

void save_parameters(const fs::path& file, Model& model, std::map<std::string, std::string> metadata) {
  metadata.emplace("format", "pt");
  metadata.emplace("producer", "rewind");
  save_safetensors(file, parameter_tensors(model), metadata);
}

void load_parameters(const fs::path& file, Model& model) {
  assign_parameters(load_safetensors(file), model, file);
}

void assign_parameters(const TensorMap& loaded, Model& model, const fs::path& file, bool strict) {
  std::string problems;
  auto problem = [&](const std::string& p) { problems += "\n  " + p; };
  for (Parameter* p : model.parameters()) {
    const auto it = loaded.find(p->name());
    if (it == loaded.end()) {
      problem("missing '" + p->name() + "' " + p->value().shape().str());
      continue;
    }
    const Tensor& t = it->second;
    if (t.shape() != p->value().shape())
      problem("'" + p->name() + "': file has " + t.shape().str() + ", model has " + p->value().shape().str());
    else if (t.dtype() != p->value().dtype())
      problem("'" + p->name() + "': file has " + dtype_name(t.dtype()) + ", model has " +
              dtype_name(p->value().dtype()));
  }
  for (const auto& [name, t] : loaded) {
    if (!strict) break;
    bool known = false;
    for (Parameter* p : model.parameters()) known = known || p->name() == name;
    if (!known)
      problem("unexpected '" + name + "' " + t.shape().str() + " (the model has no such parameter)");
  }
  if (!problems.empty())
    throw SafetensorsError("safetensors '" + file.string() + "' does not match the model:" + problems);
  for (Parameter* p : model.parameters()) {
    const Tensor& t = loaded.at(p->name());
    std::memcpy(p->value().raw(), t.raw(), t.bytes());
  }
}

}  // namespace rwd::models
