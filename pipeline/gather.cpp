// gather_model: each stage sends its parameters, in named_parameters() order, to rank 0, which
// copies them into a freshly built whole model. all_gather_values: a slot per rank, all-reduced.
#include "pipeline/gather.h"

#include <sstream>

namespace mp::pipeline {

namespace {
constexpr int kGatherTag = 11;
}

namespace {

// One line per event: start, end, the number of actions, then kind stage micro_batch for each.
std::string serialise(const StageTrace& trace) {
    std::ostringstream out;
    out.precision(17);
    out << trace.stage << " " << (trace.names_carry_stages ? 1 : 0) << " " << trace.step_us << "\n";
    for (const TraceEvent& e : trace.events) {
        out << e.start_us << " " << e.end_us << " " << e.actions.size();
        for (const Action& a : e.actions) out << " " << static_cast<int>(a.kind) << " " << a.stage << " " << a.micro_batch;
        out << "\n";
    }
    return out.str();
}

StageTrace deserialise(const std::string& text) {
    std::istringstream in(text);
    StageTrace trace;
    int names_carry_stages = 0;
    in >> trace.stage >> names_carry_stages >> trace.step_us;
    trace.names_carry_stages = names_carry_stages != 0;
    TraceEvent e;
    size_t count = 0;
    while (in >> e.start_us >> e.end_us >> count) {
        e.actions.clear();
        for (size_t i = 0; i < count; ++i) {
            int kind = 0;
            Action action{ActionKind::Forward, 0, 0};
            in >> kind >> action.stage >> action.micro_batch;
            action.kind = static_cast<ActionKind>(kind);
            e.actions.push_back(action);
        }
        trace.events.push_back(e);
    }
    return trace;
}

constexpr int kTraceTag = 7;

}  // namespace

std::vector<StageTrace> gather_traces(comm::Communicator& comm, const StageTrace& mine) {
    if (comm.rank() != 0) {
        std::string text = serialise(mine);
        std::vector<int32_t> bytes(text.begin(), text.end());
        comm.send(Tensor::from_vector<int32_t>({static_cast<int32_t>(bytes.size())}, {1}), 0, kTraceTag);
        comm.send(Tensor::from_vector(bytes, {static_cast<int64_t>(bytes.size())}), 0, kTraceTag);
        return {mine};
    }
    std::vector<StageTrace> all = {mine};
    for (int peer = 1; peer < comm.size(); ++peer) {
        Tensor length = Tensor::zeros({1}, DType::Int32);
        comm.recv(length, peer, kTraceTag);
        Tensor bytes = Tensor::zeros({static_cast<int64_t>(length.item())}, DType::Int32);
        comm.recv(bytes, peer, kTraceTag);
        std::vector<int32_t> values = bytes.to_vector<int32_t>();
        all.push_back(deserialise(std::string(values.begin(), values.end())));
    }
    return all;
}

std::shared_ptr<nn::Sequential> gather_model(comm::Communicator& pipeline, const nn::ModelSpec& spec,
                                             const std::vector<StageRange>& ranges, const std::vector<int>& placement,
                                             const std::vector<std::shared_ptr<nn::Sequential>>& held) {
    MP_REQUIRE(ranges.size() == placement.size(), "gather_model: ", ranges.size(), " stage ranges for ",
               placement.size(), " placed stages");
    if (pipeline.rank() != 0) {
        // Stage by stage, in increasing order, as rank 0 receives them.
        for (const std::shared_ptr<nn::Sequential>& stage : held)
            for (auto& [name, parameter] : stage->named_parameters()) pipeline.send(parameter, 0, kGatherTag);
        return nullptr;
    }
    std::shared_ptr<nn::Sequential> whole = spec.build_all();
    // Under NCCL the parameters arrive on the GPU the communicator uses, the rank's own.
    const Device arrival = comm::staging_device(pipeline, Device::cuda(pipeline.device_index()));
    size_t next_held = 0;  // rank 0's own stages, in order
    for (size_t s = 0; s < ranges.size(); ++s) {
        // The whole model's parameters of stage s's layers, in the order stage s lists them.
        std::shared_ptr<nn::Sequential> layers = whole->slice(static_cast<size_t>(ranges[s].begin), static_cast<size_t>(ranges[s].end));
        const bool local = placement[s] == 0;
        std::vector<std::pair<std::string, Tensor>> own = local ? held.at(next_held++)->named_parameters()
                                                                : std::vector<std::pair<std::string, Tensor>>();
        size_t i = 0;
        for (auto& [name, target] : layers->named_parameters()) {
            Tensor destination = target;
            if (local) {
                destination.copy_from(own.at(i++).second);
            } else {
                Tensor received = Tensor::empty(target.shape(), target.dtype(), arrival);
                pipeline.recv(received, placement[s], kGatherTag);
                destination.copy_from(received);
            }
        }
    }
    return whole;
}

std::vector<double> all_gather_values(comm::Communicator& comm, double value, Device device) {
    const Device where = comm::staging_device(comm, device);
    std::vector<float> slots(static_cast<size_t>(comm.size()), 0.0f);
    slots[static_cast<size_t>(comm.rank())] = static_cast<float>(value);
    Tensor t = Tensor::from_vector(slots, {comm.size()}, where);
    comm.all_reduce(t, comm::ReduceOp::Sum);
    std::vector<float> all = t.to_vector<float>();
    return std::vector<double>(all.begin(), all.end());
}

}  // namespace mp::pipeline
