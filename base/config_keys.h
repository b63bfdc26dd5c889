// Typed configuration keys for any config struct: ONE table of dotted keys (type, default, choices,
// bounds, help, and the member each reads and writes) drives the strict reading of a JSON file,
// `--set key.path=value` overrides, did-you-mean for unknown keys, the --help lines and the echo.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/enum_names.h"

namespace mp::config {

enum class KeyType { Int, Float, String, Bool, IntList };
const char* key_type_name(KeyType type);  // "int", "float", "string", "bool", "int list"

// One key: its dotted path, type, default, the allowed values of an enumerated string, the numeric
// bounds (for an int list: of every element) and its help line.
struct KeySpec {
    std::string path;
    KeyType type = KeyType::Int;
    nlohmann::json default_value;
    std::vector<std::string> choices;  // empty: any value of the type
    std::optional<double> min, max;    // inclusive unless the *_exclusive flag is set
    bool min_exclusive = false, max_exclusive = false;
    std::string help;

    // "> 0", ">= 0", "in [0, 1)", or "" when unbounded.
    std::string bounds_text() const;
};

// Checked values by key path: what a file and its overrides gave.
using KeyValues = std::map<std::string, nlohmann::json>;

// The untyped engine over a list of keys ("model.kind" and "model.vocab" make "model" a section).
class KeyTable {
  public:
    explicit KeyTable(std::vector<KeySpec> keys) : keys_(std::move(keys)) {}

    // Every key, in the order --help lists them.
    const std::vector<KeySpec>& keys() const { return keys_; }
    const KeySpec* find(const std::string& path) const;

    // The values that the JSON object `text` gives, then `overrides` ("pipeline.schedule=gpipe", in
    // order, later ones win). Throws std::invalid_argument naming `source_name` (with line:column for
    // malformed JSON), the key and the value: unknown keys (with the closest known key), duplicate
    // keys, dotted keys in the file, wrong types, values outside their choices or bounds.
    KeyValues read(const std::string& text, const std::string& source_name,
                   const std::vector<std::string>& overrides) const;

    // The value `given` holds for `key`, else its default (checked like a given one).
    nlohmann::json value_of(const KeySpec& key, const KeyValues& given) const;

    // A header line, then one line per key in columns: path, type, default, the help with the
    // choices or bounds.
    std::string help_lines() const;

  private:
    bool is_section(const std::string& path) const;
    std::string unknown_key_message(const std::string& path) const;
    void collect_file_values(const nlohmann::json& object, const std::string& prefix, KeyValues& values) const;
    void apply_override(const std::string& assignment, KeyValues& values) const;

    std::vector<KeySpec> keys_;
};

// ---------------------------------------------------------------- keys bound to a struct

namespace detail {

template <typename Field>
constexpr KeyType key_type_of() {
    if constexpr (std::is_same_v<Field, int64_t>) return KeyType::Int;
    else if constexpr (std::is_same_v<Field, double>) return KeyType::Float;
    else if constexpr (std::is_same_v<Field, std::string> || std::is_enum_v<Field>) return KeyType::String;
    else if constexpr (std::is_same_v<Field, bool>) return KeyType::Bool;
    else {
        static_assert(std::is_same_v<Field, std::vector<int64_t>>, "unsupported config field type");
        return KeyType::IntList;
    }
}

// A field as JSON: an enum by its name in its table.
template <typename Field>
nlohmann::json field_json(const Field& value) {
    if constexpr (std::is_enum_v<Field>) return name_of(value);
    else return value;
}

}  // namespace detail

// A key of Config under construction: its spec, and how it writes and reads its member. The chained
// calls add choices and bounds. An enum member is a string key whose choices are its name table.
template <typename Config>
struct Key {
    KeySpec spec;
    std::function<void(Config&, const nlohmann::json&)> write;  // the value is checked already
    std::function<nlohmann::json(const Config&)> read;

    Key& one_of(std::vector<std::string> choices) {
        spec.choices = std::move(choices);
        return *this;
    }
    Key& positive() {  // > 0
        spec.min = 0;
        spec.min_exclusive = true;
        return *this;
    }
    Key& non_negative() {  // >= 0
        spec.min = 0;
        return *this;
    }
    Key& at_most(double max) {
        spec.max = max;
        return *this;
    }
    Key& fraction() {  // [0, 1)
        spec.min = 0;
        spec.max = 1;
        spec.max_exclusive = true;
        return *this;
    }
};

// The key `path` bound to the member that `member(config)` points to, with the member's type.
template <typename Config, typename Member>
using MemberType = std::remove_pointer_t<std::invoke_result_t<Member, Config&>>;

template <typename Config, typename Member>
Key<Config> make_key(const char* path, Member member, const MemberType<Config, Member>& default_value,
                     const char* help) {
    using Field = MemberType<Config, Member>;
    Key<Config> key;
    key.spec.path = path;
    key.spec.type = detail::key_type_of<Field>();
    key.spec.default_value = detail::field_json(default_value);
    key.spec.help = help;
    if constexpr (std::is_enum_v<Field>) key.spec.choices = enum_names(Field{}).names();
    key.write = [member, path](Config& config, const nlohmann::json& value) {
        if constexpr (std::is_enum_v<Field>) *member(config) = parse_enum<Field>(value.get<std::string>(), path);
        else *member(config) = value.get<Field>();
    };
    // The accessor takes a mutable config; reading through it modifies nothing.
    key.read = [member](const Config& config) { return detail::field_json(*member(const_cast<Config&>(config))); };
    return key;
}

// A table of keys bound to the members of Config: parsing into a Config, and back to JSON.
template <typename Config>
class BoundKeyTable {
  public:
    explicit BoundKeyTable(std::vector<Key<Config>> keys) : table_(specs_of(keys)), keys_(std::move(keys)) {}

    const KeyTable& table() const { return table_; }
    const std::vector<KeySpec>& keys() const { return table_.keys(); }

    // A Config with every member set: the value `given` holds, else the key's default.
    Config assign(const KeyValues& given) const {
        Config config{};
        for (const Key<Config>& key : keys_) key.write(config, table_.value_of(key.spec, given));
        return config;
    }

    // The config as nested JSON, one leaf per key ("pipeline.stages" at /pipeline/stages); reading its
    // dump gives the same config back.
    nlohmann::json to_json(const Config& config) const {
        nlohmann::json document = nlohmann::json::object();
        for (const Key<Config>& key : keys_) {
            std::string pointer = "/" + key.spec.path;
            for (char& c : pointer)
                if (c == '.') c = '/';
            document[nlohmann::json::json_pointer(pointer)] = key.read(config);
        }
        return document;
    }

    // Every key whose values differ, as `path (a_name: value, b_name: value)`, in table order.
    std::vector<std::string> differences(const Config& a, const std::string& a_name, const Config& b,
                                         const std::string& b_name) const;

  private:
    static std::vector<KeySpec> specs_of(const std::vector<Key<Config>>& keys) {
        std::vector<KeySpec> specs;
        for (const Key<Config>& key : keys) specs.push_back(key.spec);
        return specs;
    }

    KeyTable table_;
    std::vector<Key<Config>> keys_;
};

// `path (a_name: value, b_name: value)`, values abbreviated.
std::string difference_text(const std::string& path, const std::string& a_name, const nlohmann::json& a_value,
                            const std::string& b_name, const nlohmann::json& b_value);

template <typename Config>
std::vector<std::string> BoundKeyTable<Config>::differences(const Config& a, const std::string& a_name,
                                                            const Config& b, const std::string& b_name) const {
    std::vector<std::string> found;
    for (const Key<Config>& key : keys_) {
        const nlohmann::json a_value = key.read(a), b_value = key.read(b);
        if (a_value != b_value) found.push_back(difference_text(key.spec.path, a_name, a_value, b_name, b_value));
    }
    return found;
}

}  // namespace mp::config
