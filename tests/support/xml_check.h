// A minimal XML well-formedness check (for the timeline SVGs): one root element, tags balanced
// and properly nested, attribute values quoted, no raw '<' in text or values, and every '&'
// starting a known entity. Used by test_timeline and by the example smoke test's output checker.
#pragma once

#include <string>

namespace mp::testing {

// "" if `xml` is well-formed, else what is wrong and where.
std::string xml_problem(const std::string& xml);

}  // namespace mp::testing
