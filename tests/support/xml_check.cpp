// The XML well-formedness check.
#include "tests/support/xml_check.h"

#include <cctype>
#include <cstring>
#include <vector>

namespace mp::testing {

static bool entity_at(const std::string& xml, size_t at) {
    for (const char* entity : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"})
        if (xml.compare(at, std::strlen(entity), entity) == 0) return true;
    return false;
}

std::string xml_problem(const std::string& xml) {
    std::vector<std::string> open;
    int roots = 0;
    size_t i = 0;
    auto is_name_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == ':'; };
    while (i < xml.size()) {
        if (xml[i] == '&') {
            if (!entity_at(xml, i)) return "bare '&' at " + std::to_string(i);
            ++i;
            continue;
        }
        if (xml[i] != '<') {
            if (open.empty() && !std::isspace(static_cast<unsigned char>(xml[i])))
                return "text outside the root at " + std::to_string(i);
            ++i;
            continue;
        }
        if (xml.compare(i, 4, "<!--") == 0) {
            size_t end = xml.find("-->", i);
            if (end == std::string::npos) return "unterminated comment";
            i = end + 3;
            continue;
        }
        if (xml.compare(i, 2, "</") == 0) {
            size_t end = xml.find('>', i);
            if (end == std::string::npos) return "unterminated end tag";
            std::string name = xml.substr(i + 2, end - i - 2);
            if (open.empty() || open.back() != name)
                return "</" + name + "> at " + std::to_string(i) + " closes " + (open.empty() ? "nothing" : "<" + open.back() + ">");
            open.pop_back();
            i = end + 1;
            continue;
        }
        // A start tag: name, then name="value" pairs, then '>' or '/>'.
        size_t j = i + 1;
        while (j < xml.size() && is_name_char(xml[j])) ++j;
        std::string name = xml.substr(i + 1, j - i - 1);
        if (name.empty()) return "'<' not starting a tag at " + std::to_string(i);
        if (open.empty() && ++roots > 1) return "a second root element <" + name + ">";
        for (;;) {
            while (j < xml.size() && std::isspace(static_cast<unsigned char>(xml[j]))) ++j;
            if (j >= xml.size()) return "unterminated <" + name + ">";
            if (xml[j] == '>') {
                open.push_back(name);
                ++j;
                break;
            }
            if (xml.compare(j, 2, "/>") == 0) {
                j += 2;
                break;
            }
            size_t attribute_start = j;
            while (j < xml.size() && is_name_char(xml[j])) ++j;
            if (j == attribute_start || j + 1 >= xml.size() || xml[j] != '=' || xml[j + 1] != '"')
                return "malformed attribute in <" + name + "> at " + std::to_string(j);
            size_t value_end = xml.find('"', j + 2);
            if (value_end == std::string::npos) return "unterminated attribute value in <" + name + ">";
            for (size_t k = j + 2; k < value_end; ++k) {
                if (xml[k] == '<') return "raw '<' in an attribute value of <" + name + ">";
                if (xml[k] == '&' && !entity_at(xml, k)) return "bare '&' in an attribute value of <" + name + ">";
            }
            j = value_end + 1;
        }
        i = j;
    }
    if (!open.empty()) return "<" + open.back() + "> never closed";
    if (roots != 1) return "no root element";
    return "";
}

}  // namespace mp::testing
