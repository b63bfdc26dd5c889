// The engine behind every key table: walking the file's objects, type and choice and bound checks,
// `--set` values read per the key's type, the closest known key for a typo, and the --help columns.
#include "base/config_keys.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <iomanip>
#include <limits>
#include <set>
#include <sstream>

#include "base/error.h"
#include "base/json_limits.h"
#include "base/strict_json.h"

namespace mp::config {

using nlohmann::json;

const char* key_type_name(KeyType type) {
    switch (type) {
        case KeyType::Int: return "int";
        case KeyType::Float: return "float";
        case KeyType::String: return "string";
        case KeyType::Bool: return "bool";
        case KeyType::IntList: return "int list";
    }
    return "?";
}

namespace {

std::string format_number(double value) {
    std::ostringstream out;
    out << value;
    return out.str();
}

}  // namespace

std::string KeySpec::bounds_text() const {
    if (min && max)
        return str("in ", min_exclusive ? "(" : "[", format_number(*min), ", ", format_number(*max),
                   max_exclusive ? ")" : "]");
    if (min) return str(min_exclusive ? "> " : ">= ", format_number(*min));
    if (max) return str(max_exclusive ? "< " : "<= ", format_number(*max));
    return "";
}

std::string difference_text(const std::string& path, const std::string& a_name, const json& a_value,
                            const std::string& b_name, const json& b_value) {
    return str(path, " (", a_name, ": ", abbreviated(a_value), ", ", b_name, ": ", abbreviated(b_value), ")");
}

// ---------------------------------------------------------------- one value

namespace {

// "int 4", "float 4.5", "string \"4\"", "bool true", "list [1,2]", "object {...}", "null".
std::string describe_value(const json& value) {
    switch (value.type()) {
        case json::value_t::number_integer:
        case json::value_t::number_unsigned: return "int " + abbreviated(value);
        case json::value_t::number_float: return "float " + abbreviated(value);
        case json::value_t::string: return "string " + abbreviated(value);
        case json::value_t::boolean: return "bool " + abbreviated(value);
        case json::value_t::array: return "list " + abbreviated(value);
        case json::value_t::object: return "object " + abbreviated(value);
        case json::value_t::null: return "null";
        default: return abbreviated(value);
    }
}

// "a | b | c".
std::string choices_text(const KeySpec& key) {
    std::string text;
    for (const std::string& choice : key.choices) text += (text.empty() ? "" : " | ") + choice;
    return text;
}

bool is_int(const json& value) {
    if (value.is_number_integer() && !value.is_number_unsigned()) return true;
    return value.is_number_unsigned() &&
           value.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

// The value in the key's canonical JSON type (an int given for a float becomes a float), or
// an exception "path: expected int, got string \"4\"".
json coerce_type(const KeySpec& key, const json& value) {
    bool ok = false;
    json result = value;
    switch (key.type) {
        case KeyType::Int: ok = is_int(value); break;
        case KeyType::Float:
            ok = value.is_number() && (value.is_number_float() || is_int(value));
            if (ok) result = value.get<double>();
            break;
        case KeyType::String: ok = value.is_string(); break;
        case KeyType::Bool: ok = value.is_boolean(); break;
        case KeyType::IntList:
            ok = value.is_array() && std::all_of(value.begin(), value.end(), is_int);
            break;
    }
    MP_REQUIRE(ok, key.path, ": expected ", key_type_name(key.type), ", got ", describe_value(value));
    return result;
}

void check_bounds(const KeySpec& key, double number, const std::string& where, const std::string& shown) {
    bool below = key.min && (key.min_exclusive ? number <= *key.min : number < *key.min);
    bool above = key.max && (key.max_exclusive ? number >= *key.max : number > *key.max);
    MP_REQUIRE(!below && !above, where, " must be ", key.bounds_text(), ", got ", shown);
}

// Choices and bounds of a value already of the key's type.
void check_constraints(const KeySpec& key, const json& value) {
    if (!key.choices.empty()) {
        const std::string& text = value.get_ref<const std::string&>();
        if (std::find(key.choices.begin(), key.choices.end(), text) == key.choices.end())
            throw std::invalid_argument(str(key.path, ": ", abbreviated(value), " is not one of ", choices_text(key)));
    }
    if (!key.min && !key.max) return;
    if (key.type == KeyType::IntList) {
        for (size_t i = 0; i < value.size(); ++i)
            check_bounds(key, value[i].get<double>(), str(key.path, "[", i, "]"), abbreviated(value[i]));
    } else if (key.type == KeyType::Int || key.type == KeyType::Float) {
        check_bounds(key, value.get<double>(), key.path, abbreviated(value));
    }
}

json checked_value(const KeySpec& key, const json& value) {
    json typed = coerce_type(key, value);
    check_constraints(key, typed);
    return typed;
}

std::string trim(const std::string& text) {
    size_t begin = text.find_first_not_of(" \t\r\n");
    if (begin == std::string::npos) return "";
    size_t end = text.find_last_not_of(" \t\r\n");
    return text.substr(begin, end - begin + 1);
}

bool parse_int(const std::string& raw, int64_t& out) {
    std::string text = trim(raw);
    if (text.empty()) return false;
    errno = 0;
    char* end = nullptr;
    long long value = std::strtoll(text.c_str(), &end, 10);
    if (errno != 0 || *end != '\0') return false;
    out = value;
    return true;
}

// The value of an override, read per the key's type: 4, 3e-4, true, gpipe (or "gpipe"),
// [4,3,3,4] or 4,3,3,4.
json parse_override_value(const KeySpec& key, const std::string& raw) {
    std::string text = trim(raw);
    auto fail = [&]() -> json {
        throw std::invalid_argument(str(key.path, ": expected ", key_type_name(key.type), ", got \"", raw, "\""));
    };
    switch (key.type) {
        case KeyType::Int: {
            int64_t value = 0;
            return parse_int(text, value) ? json(value) : fail();
        }
        case KeyType::Float: {
            if (text.empty()) return fail();
            errno = 0;
            char* end = nullptr;
            double value = std::strtod(text.c_str(), &end);
            if (errno != 0 || *end != '\0' || !std::isfinite(value)) return fail();
            return json(value);
        }
        case KeyType::Bool:
            if (text == "true") return json(true);
            if (text == "false") return json(false);
            return fail();
        case KeyType::String:
            if (text.size() >= 2 && text.front() == '"' && text.back() == '"')
                return json(text.substr(1, text.size() - 2));
            return json(text);
        case KeyType::IntList: {
            std::string body = text;
            if (!body.empty() && body.front() == '[') {
                if (body.back() != ']') return fail();
                body = trim(body.substr(1, body.size() - 2));
            }
            json list = json::array();
            if (body.empty()) return list;
            std::stringstream items(body);
            std::string item;
            while (std::getline(items, item, ',')) {
                int64_t value = 0;
                if (!parse_int(item, value)) return fail();
                list.push_back(value);
            }
            if (body.back() == ',') return fail();
            return list;
        }
    }
    return fail();
}

size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<size_t> previous(b.size() + 1), current(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) previous[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        current[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            size_t substitute = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
            current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitute});
        }
        std::swap(previous, current);
    }
    return previous[b.size()];
}

}  // namespace

// ---------------------------------------------------------------- the table

const KeySpec* KeyTable::find(const std::string& path) const {
    for (const KeySpec& key : keys_)
        if (key.path == path) return &key;
    return nullptr;
}

// "model", "pipeline", ...: the prefixes that group keys into JSON objects.
bool KeyTable::is_section(const std::string& path) const {
    for (const KeySpec& key : keys_)
        if (key.path.size() > path.size() && key.path.compare(0, path.size(), path) == 0 &&
            key.path[path.size()] == '.')
            return true;
    return false;
}

// "unknown key pipeline.shedule (did you mean pipeline.schedule?)".
std::string KeyTable::unknown_key_message(const std::string& path) const {
    std::string best;
    size_t best_distance = std::string::npos;
    auto consider = [&](const std::string& candidate) {
        size_t distance = edit_distance(path, candidate);
        if (distance < best_distance) {
            best_distance = distance;
            best = candidate;
        }
    };
    std::set<std::string> sections;
    for (const KeySpec& key : keys_) {
        consider(key.path);
        size_t dot = key.path.find('.');
        if (dot != std::string::npos) sections.insert(key.path.substr(0, dot));
    }
    for (const std::string& section : sections) consider(section);
    std::string message = str("unknown key ", path);
    if (best_distance <= std::max<size_t>(2, path.size() / 3)) message += str(" (did you mean ", best, "?)");
    return message + " (see --help for every key)";
}

// Walks the file's objects: leaves must be known keys of the right type and within their
// choices and bounds, objects must be known sections.
void KeyTable::collect_file_values(const json& object, const std::string& prefix, KeyValues& values) const {
    for (auto item = object.begin(); item != object.end(); ++item) {
        std::string path = prefix.empty() ? item.key() : prefix + "." + item.key();
        MP_REQUIRE(item.key().find('.') == std::string::npos, "key \"", path,
                   "\": write dotted paths as nested objects ({\"pipeline\": {\"stages\": 4}})");
        if (const KeySpec* key = find(path)) {
            values[path] = checked_value(*key, item.value());
        } else if (is_section(path)) {
            MP_REQUIRE(item.value().is_object(), path, ": expected object, got ", describe_value(item.value()));
            collect_file_values(item.value(), path, values);
        } else {
            throw std::invalid_argument(unknown_key_message(path));
        }
    }
}

void KeyTable::apply_override(const std::string& assignment, KeyValues& values) const {
    std::string origin = "--set " + assignment;
    size_t equals = assignment.find('=');
    MP_REQUIRE(equals != std::string::npos, origin, ": expected key.path=value");
    std::string path = trim(assignment.substr(0, equals));
    const KeySpec* key = find(path);
    if (!key) {
        if (is_section(path))
            throw std::invalid_argument(str(origin, ": ", path, " is a section; set one of its keys (", path, ".…)"));
        throw std::invalid_argument(str(origin, ": ", unknown_key_message(path)));
    }
    try {
        values[path] = checked_value(*key, parse_override_value(*key, assignment.substr(equals + 1)));
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(str(origin, ": ", e.what()));
    }
}

KeyValues KeyTable::read(const std::string& text, const std::string& source_name,
                         const std::vector<std::string>& overrides) const {
    json document = parse_json_strict(text, source_name);
    MP_REQUIRE(document.is_object(), source_name, ": the configuration must be a JSON object, got ",
               describe_value(document));
    KeyValues values;
    try {
        collect_file_values(document, "", values);
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(str(source_name, ": ", e.what()));
    }
    for (const std::string& assignment : overrides) apply_override(assignment, values);
    return values;
}

json KeyTable::value_of(const KeySpec& key, const KeyValues& given) const {
    auto found = given.find(key.path);
    return found != given.end() ? found->second : checked_value(key, key.default_value);
}

std::string KeyTable::help_lines() const {
    size_t path_width = 0, default_width = 0;
    for (const KeySpec& key : keys_) {
        path_width = std::max(path_width, key.path.size());
        default_width = std::max(default_width, key.default_value.dump().size());
    }
    const int path_column = static_cast<int>(path_width) + 2, default_column = static_cast<int>(default_width) + 2;
    std::ostringstream out;
    out << std::left << std::setw(path_column) << "key" << std::setw(10) << "type" << std::setw(default_column)
        << "default" << "description\n";
    for (const KeySpec& key : keys_) {
        std::string description = key.help;
        if (!key.choices.empty()) description += "; one of " + choices_text(key);
        if (!key.bounds_text().empty()) description += str(" (", key.bounds_text(), ")");
        out << std::setw(path_column) << key.path << std::setw(10) << key_type_name(key.type)
            << std::setw(default_column) << key.default_value.dump() << description << "\n";
    }
    return out.str();
}

}  // namespace mp::config
