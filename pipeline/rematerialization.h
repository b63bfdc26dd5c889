// The re-materialization modes of a pipeline stage (what it keeps between a micro-batch's forward
// and backward), with their config names. Apart from the engine so configs can name them
// without pulling in communication.
#pragma once

#include <string>

namespace mp::pipeline {

// torchgpipe's checkpoint modes: never (stash each micro-batch's internals), always (stash only
// each micro-batch's stage input and recompute the forward under a fresh tape right before its
// backward), except_last (always, but not for the last micro-batch, whose backward comes first).
enum class Rematerialization { Never, Always, ExceptLast };
Rematerialization parse_rematerialization(const std::string& name);
const char* rematerialization_name(Rematerialization mode);

}  // namespace mp::pipeline
