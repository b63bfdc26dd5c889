// The re-materialization modes of a pipeline stage (what it keeps between a micro-batch's forward
// and backward), with their one name table. Apart from the engine so configs can name them
// without pulling in communication.
#pragma once

#include "base/enum_names.h"

namespace mp::pipeline {

// torchgpipe's checkpoint modes: never (stash each micro-batch's internals), always (stash only
// each micro-batch's stage input and recompute the forward under a fresh tape right before its
// backward), except_last (always, but not for the last micro-batch, whose backward comes first).
enum class Rematerialization { Never, Always, ExceptLast };

inline const EnumNames<Rematerialization>& enum_names(Rematerialization) {
    static const EnumNames<Rematerialization> names{{Rematerialization::Never, "never"},
                                                    {Rematerialization::Always, "always"},
                                                    {Rematerialization::ExceptLast, "except_last"}};
    return names;
}

}  // namespace mp::pipeline
