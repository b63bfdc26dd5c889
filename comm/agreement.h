// How the ranks of a job stop together. At start-up every rank contributes its local verdict (an
// error, or its resolved configuration) to one gather with a deadline, so all ranks reach the
// same decision and print the cause; later, a rank that fails on its own ends the whole job at
// once (abort_job) instead of leaving the others waiting for it until their timeout.
#pragma once

#include <string>
#include <vector>

namespace mp::comm {

// Every rank's `local_text` (any length), gathered over MPI_COMM_WORLD, in rank order. A rank
// that never arrives is reported by the deadline: past `timeout_seconds` the job aborts naming
// what it waited for. `what` names the gather in that message.
std::vector<std::string> gather_texts(const std::string& local_text, const std::string& what, double timeout_seconds);

// Prints `message` on stderr (prefixed with this rank and host), runs the abort hooks
// (ncclCommAbort), waits a short grace period so that ranks failing at the same moment can print
// their own cause too, then ends every rank of the job with MPI_Abort. For errors one rank meets
// while the others carry on (a missing file, a full disk): they would otherwise wait for it in
// their next transfer until the timeout.
[[noreturn]] void abort_job(const std::string& message, int exit_code = 1);

}  // namespace mp::comm
