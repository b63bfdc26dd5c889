// Parsing and naming the re-materialization modes.
#include "pipeline/rematerialization.h"

#include <stdexcept>

namespace mp::pipeline {

Rematerialization parse_rematerialization(const std::string& name) {
    if (name == "never") return Rematerialization::Never;
    if (name == "always") return Rematerialization::Always;
    if (name == "except_last") return Rematerialization::ExceptLast;
    throw std::invalid_argument("rematerialization: unknown mode '" + name + "' (never, always or except_last)");
}

const char* rematerialization_name(Rematerialization mode) {
    switch (mode) {
        case Rematerialization::Never: return "never";
        case Rematerialization::Always: return "always";
        case Rematerialization::ExceptLast: return "except_last";
    }
    return "?";
}

}  // namespace mp::pipeline
