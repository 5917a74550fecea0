// What a plugin exports: one versioned descriptor, found by name with Boost.DLL. Include this in a plugin and
// end the file with REWIND_PLUGIN(your_descriptor). See docs/plugins.md.
#pragma once

#include <boost/dll/alias.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "rewind/models/cell.hpp"
#include "rewind/models/options.hpp"
#include "rewind/trainers/trainer.hpp"

namespace rwd::plugins {

// Bumped whenever Descriptor, Cell, Model, Trainer or anything a factory or trainer exchanges changes layout
// (2: ModelConfig gained dropout and tie_weights, which moved Model's members; Trainer::settings and
// restore_settings, UpdateStats::k1 and k2; 3: UpdateStats::normalizer; 4: Cell::infer and Model's buffers
// for it).
inline constexpr std::uint32_t abi_version = 4;

#define REWIND_PLUGIN_STR2(x) #x
#define REWIND_PLUGIN_STR(x) REWIND_PLUGIN_STR2(x)
#if defined(__clang__)
#define REWIND_PLUGIN_COMPILER "clang " REWIND_PLUGIN_STR(__clang_major__)
#elif defined(__GNUC__)
#define REWIND_PLUGIN_COMPILER "gcc " REWIND_PLUGIN_STR(__GNUC__)
#else
#define REWIND_PLUGIN_COMPILER "unknown compiler"
#endif
#if defined(_GLIBCXX_RELEASE)
#define REWIND_PLUGIN_STDLIB \
  "libstdc++ " REWIND_PLUGIN_STR(_GLIBCXX_RELEASE) " cxx11-abi " REWIND_PLUGIN_STR(_GLIBCXX_USE_CXX11_ABI)
#elif defined(_LIBCPP_VERSION)
#define REWIND_PLUGIN_STDLIB "libc++ " REWIND_PLUGIN_STR(_LIBCPP_VERSION)
#else
#define REWIND_PLUGIN_STDLIB "unknown standard library"
#endif
// Host and plugin exchange C++ objects (std::unique_ptr<Cell>, std::string, Options): both sides must have
// been built by the same compiler family and major version against the same standard library.
inline constexpr const char build_fingerprint[] =
    REWIND_PLUGIN_COMPILER ", " REWIND_PLUGIN_STDLIB ", float training";

enum class Kind : std::uint32_t { model = 1, trainer = 2 };
inline const char* name_of(Kind k) {
  return k == Kind::model ? "model" : k == Kind::trainer ? "trainer" : "unknown";
}

using CellFactory = std::unique_ptr<models::Cell> (*)(const models::CellSpec&);
using TrainerFactory = std::unique_ptr<trainers::Trainer> (*)(const trainers::TrainerSpec&);

struct Descriptor {
  std::uint32_t abi_version;  // first, so a loader can read it before trusting the rest of the layout
  const char* fingerprint;
  Kind kind;
  const char* name;
  const char* description;
  const models::OptionSpec* options;
  std::size_t option_count;
  CellFactory create_cell;        // kind == model
  TrainerFactory create_trainer;  // kind == trainer

  std::span<const models::OptionSpec> option_specs() const { return {options, option_count}; }
};

template <std::size_t N>
constexpr Descriptor model_descriptor(const char* name, const char* description,
                                      const models::OptionSpec (&options)[N], CellFactory create) {
  return {abi_version, build_fingerprint, Kind::model, name, description, options, N, create, nullptr};
}

constexpr Descriptor model_descriptor(const char* name, const char* description, CellFactory create) {
  return {abi_version, build_fingerprint, Kind::model, name, description, nullptr, 0, create, nullptr};
}

template <std::size_t N>
constexpr Descriptor trainer_descriptor(const char* name, const char* description,
                                        const models::OptionSpec (&options)[N], TrainerFactory create) {
  return {abi_version, build_fingerprint, Kind::trainer, name, description, options, N, nullptr, create};
}

constexpr Descriptor trainer_descriptor(const char* name, const char* description, TrainerFactory create) {
  return {abi_version, build_fingerprint, Kind::trainer, name, description, nullptr, 0, nullptr, create};
}

// The exported symbol's name.
inline constexpr const char descriptor_symbol[] = "rewind_plugin_descriptor";

}  // namespace rwd::plugins

#define REWIND_PLUGIN(descriptor) BOOST_DLL_ALIAS(descriptor, rewind_plugin_descriptor)
