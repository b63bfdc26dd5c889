// One name table per enum: the names its values have in configs and on the command line. The
// same table parses, prints, lists the choices in --help and names the valid values in an error,
// so those can never disagree. An enum opts in with an overload `enum_names(Enum)` (found by ADL).
#pragma once

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"

namespace mp {

template <typename Enum>
class EnumNames {
  public:
    EnumNames(std::initializer_list<std::pair<Enum, const char*>> entries) : entries_(entries) {}

    // The name of `value` ("?" for a value outside the table).
    const char* name(Enum value) const {
        for (const auto& [entry, entry_name] : entries_)
            if (entry == value) return entry_name;
        return "?";
    }

    // The value called `text`; otherwise std::invalid_argument `what: "text" is not one of a | b | c`.
    Enum parse(const std::string& text, const std::string& what) const {
        for (const auto& [entry, entry_name] : entries_)
            if (text == entry_name) return entry;
        throw std::invalid_argument(str(what, ": \"", text, "\" is not one of ", joined()));
    }

    // Every name, in table order.
    std::vector<std::string> names() const {
        std::vector<std::string> all;
        for (const auto& entry : entries_) all.push_back(entry.second);
        return all;
    }

    // "a | b | c" (or with another separator: "a|b|c").
    std::string joined(const std::string& separator = " | ") const {
        std::string text;
        for (const auto& entry : entries_) text += (text.empty() ? "" : separator) + std::string(entry.second);
        return text;
    }

  private:
    std::vector<std::pair<Enum, const char*>> entries_;
};

// The name of an enum value, through its table: name_of(ModelKind::Gpt) is "gpt".
template <typename Enum>
const char* name_of(Enum value) {
    return enum_names(value).name(value);
}

// The value of an enum called `text`, or std::invalid_argument naming `what`, the text and the choices.
template <typename Enum>
Enum parse_enum(const std::string& text, const std::string& what) {
    return enum_names(Enum{}).parse(text, what);
}

}  // namespace mp
