// A tiny command-line parser driven by one table: each flag's name, default, and help text.
// --help prints the same table the parser reads, so usage text cannot drift from the parser.
#pragma once

#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace mp::examples {

class Flags {
  public:
    struct Flag {
        std::string name, default_value, help;
    };

    Flags(std::string program, std::string summary, std::vector<Flag> table)
        : program_(std::move(program)), summary_(std::move(summary)), table_(std::move(table)) {
        for (const Flag& flag : table_) values_[flag.name] = flag.default_value;
    }

    // Parses --name=value or --name value. Returns false when --help was asked for (after printing it).
    bool parse(int argc, char** argv) {
        for (int i = 1; i < argc; ++i) {
            std::string arg = argv[i];
            if (arg == "--help" || arg == "-h") {
                print_help();
                return false;
            }
            if (arg.rfind("--", 0) != 0) throw std::invalid_argument(program_ + ": unexpected argument '" + arg + "' (see --help)");
            std::string name = arg.substr(2), value;
            size_t eq = name.find('=');
            if (eq != std::string::npos) {
                value = name.substr(eq + 1);
                name = name.substr(0, eq);
            } else {
                if (i + 1 >= argc) throw std::invalid_argument(program_ + ": --" + name + " needs a value");
                value = argv[++i];
            }
            if (!values_.count(name)) throw std::invalid_argument(program_ + ": unknown flag --" + name + " (see --help)");
            values_[name] = value;
        }
        return true;
    }

    std::string str(const std::string& name) const { return values_.at(name); }
    long long integer(const std::string& name) const { return convert<long long>(name, [](const std::string& s, size_t* end) { return std::stoll(s, end); }); }
    double real(const std::string& name) const { return convert<double>(name, [](const std::string& s, size_t* end) { return std::stod(s, end); }); }

    void print_help() const {
        std::printf("usage: %s [--flag value ...]\n%s\n\n", program_.c_str(), summary_.c_str());
        for (const Flag& flag : table_)
            std::printf("  --%-16s %s (default: %s)\n", flag.name.c_str(), flag.help.c_str(),
                        flag.default_value.empty() ? "\"\"" : flag.default_value.c_str());
    }

  private:
    template <typename T, typename Convert>
    T convert(const std::string& name, Convert fn) const {
        const std::string& text = values_.at(name);
        size_t end = 0;
        try {
            T value = fn(text, &end);
            if (end == text.size()) return value;
        } catch (const std::exception&) {
        }
        throw std::invalid_argument(program_ + ": --" + name + " expects a number, got '" + text + "'");
    }

    std::string program_, summary_;
    std::vector<Flag> table_;
    std::map<std::string, std::string> values_;
};

}  // namespace mp::examples
