// Multi-rank tests of comm/, run under mpirun (-np 2 and -np 4) by tests/run_mpi_tests.sh:
// point-to-point round trips, batched ring exchanges, receives listed in reverse tag order,
// collectives, split, the mismatch errors on both ranks, the backend decision; with a GPU also
// CUDA tensors over MPI and NCCL.
// Every rank runs every test; rank 0 prints the GoogleTest report and counts a test as failed
// when it failed on any rank (other ranks print their own failures with a [rank r] prefix).
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdlib>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "comm/make_communicator.h"
#include "comm/mpi_runtime.h"
#include "tests/mpi/multi_rank_main.h"
#include "tests/support/test_util.h"

namespace mp::comm {
namespace {

using mp::testing::expect_equal;

std::unique_ptr<Communicator> g_world;  // MPI backend over all ranks

// Deterministic values for (shape, dtype, seed): every rank can rebuild what another sent.
Tensor values(const Shape& shape, DType dtype, uint64_t seed, Device device = Device::cpu()) {
    Tensor host = dtype == DType::Int32 ? mp::testing::random_ids(shape, 100000, seed)
                                        : mp::testing::random_tensor(shape, seed, 1.0, dtype);
    return device.is_cpu() ? host : host.to(device);
}

// Runs `fn`, expects std::invalid_argument whose message has every fragment.
template <typename Fn>
void expect_mismatch(Fn&& fn, const std::vector<std::string>& fragments) {
    mp::testing::expect_invalid_argument(std::forward<Fn>(fn), fragments);
}

class Comm : public mp::testing::AllRanksTest {
  protected:
    Communicator& world() { return *g_world; }
    int rank() { return g_world->rank(); }
    int size() { return g_world->size(); }
};

const std::vector<Shape> kShapes = {{}, {1}, {7}, {3, 5}, {2, 3, 4}, {0, 4}, {257, 33}};
const std::vector<DType> kDtypes = {DType::Float32, DType::Float64, DType::Int32};

TEST_F(Comm, RankSizeAndLocalRank) {
    int mpi_rank = -1, mpi_size = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &mpi_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &mpi_size);
    EXPECT_EQ(rank(), mpi_rank);
    EXPECT_EQ(size(), mpi_size);
    EXPECT_EQ(world().backend(), Backend::Mpi);
    MpiRuntime& runtime = MpiRuntime::instance();
    EXPECT_GE(world().local_rank(), 0);
    EXPECT_LT(world().local_rank(), runtime.local_size());
    // All ranks on one host (this test's launch): the local rank is the world rank.
    if (runtime.local_size() == size()) {
        EXPECT_EQ(world().local_rank(), rank());
    }
    if (cuda_available()) {
        EXPECT_EQ(runtime.gpu(), runtime.local_rank() % cuda_device_count());
    } else {
        EXPECT_EQ(runtime.gpu(), -1);
    }
}

// Pairs (0, 1), (2, 3): the even rank sends, the odd one checks and sends it back.
void round_trips(Communicator& comm, Device device) {
    int partner = comm.rank() ^ 1;
    if (partner >= comm.size()) return;
    bool sender = comm.rank() % 2 == 0;
    int tag = 0;
    for (const Shape& shape : kShapes) {
        for (DType dtype : kDtypes) {
            if (device.is_cuda() && dtype == DType::Float64) continue;  // float64 is CPU-only
            ++tag;
            std::string what = str(dtype_name(dtype), shape_str(shape), " on ", device.str());
            Tensor original = values(shape, dtype, 1000 + static_cast<uint64_t>(tag), device);
            Tensor received = mp::testing::poisoned(shape, dtype, device);
            if (sender) {
                comm.send(original, partner, tag);
                comm.recv(received, partner, tag);
            } else {
                comm.recv(received, partner, tag);
                comm.send(received, partner, tag);
            }
            expect_equal(received, original, what);
        }
    }
}

TEST_F(Comm, SendRecvRoundTripsOverShapesAndDtypes) { round_trips(world(), Device::cpu()); }

// One batch per rank: to both neighbours and from both, including a 4 MiB tensor so the MPI
// transport uses its rendezvous protocol (an eager small message would hide a deadlock).
void ring_exchange(Communicator& comm, Device device) {
    int next = (comm.rank() + 1) % comm.size();
    int prev = (comm.rank() + comm.size() - 1) % comm.size();
    const std::vector<Shape> shapes = {{5, 3}, {1 << 20}};
    for (size_t s = 0; s < shapes.size(); ++s) {
        const Shape& shape = shapes[s];
        auto seed = [&](int from_rank, int direction) { return static_cast<uint64_t>(100 * from_rank + 10 * s + direction); };
        Tensor forward_out = values(shape, DType::Float32, seed(comm.rank(), 1), device);
        Tensor backward_out = values(shape, DType::Float32, seed(comm.rank(), 2), device);
        Tensor forward_in = mp::testing::poisoned(shape, DType::Float32, device);
        Tensor backward_in = mp::testing::poisoned(shape, DType::Float32, device);
        // Like 1F1B's steady state: activation forward and gradient backward in one batch.
        comm.exchange({Transfer::send(forward_out, next, 1), Transfer::recv(backward_in, next, 2),
                       Transfer::send(backward_out, prev, 2), Transfer::recv(forward_in, prev, 1)});
        expect_equal(forward_in, values(shape, DType::Float32, seed(prev, 1)), str("forward from rank ", prev));
        expect_equal(backward_in, values(shape, DType::Float32, seed(next, 2)), str("backward from rank ", next));
    }
}

TEST_F(Comm, BatchedBidirectionalRingExchange) { ring_exchange(world(), Device::cpu()); }

// Rank `sender` sends a (tag 1) then b (tag 2); rank `receiver` lists its receives in the
// reverse order (b first), each rank in one batch: one batch holding all four transfers when
// sender == receiver (a communicator sending to itself). NCCL has no tags, so this passes only
// when both ranks issue in the same (peer, tag) order. a and b differ in shape, dtype and
// values: crossed bytes cannot go unnoticed.
void reversed_tag_order(Communicator& comm, int sender, int receiver, Device device) {
    Tensor a = values({3, 5}, DType::Float32, 61, device);
    Tensor b = values({7}, DType::Int32, 62, device);
    Tensor a_in = mp::testing::poisoned({3, 5}, DType::Float32, device);
    Tensor b_in = mp::testing::poisoned({7}, DType::Int32, device);
    std::vector<Transfer> batch;
    if (comm.rank() == sender) {
        batch.push_back(Transfer::send(a, receiver, 1));
        batch.push_back(Transfer::send(b, receiver, 2));
    }
    if (comm.rank() == receiver) {
        batch.push_back(Transfer::recv(b_in, sender, 2));
        batch.push_back(Transfer::recv(a_in, sender, 1));
    }
    if (batch.empty()) return;
    comm.exchange(batch);
    if (comm.rank() == receiver) {
        std::string how = str(" (", name_of(comm.backend()), ", ", device.str(), ", rank ", sender, " to rank ",
                              receiver, ", received in reverse tag order)");
        expect_equal(a_in, values({3, 5}, DType::Float32, 61), "tag 1" + how);
        expect_equal(b_in, values({7}, DType::Int32, 62), "tag 2" + how);
    }
}

// The reversed-order check on a one-rank MPI communicator: runs everywhere (no GPU needed).
TEST_F(Comm, MpiOnOneRankReceivesTagsInReverseOrder) {
    std::unique_ptr<Communicator> self = world().split(rank(), std::nullopt, Backend::Mpi);
    ASSERT_EQ(self->backend(), Backend::Mpi);
    ASSERT_EQ(self->size(), 1);
    reversed_tag_order(*self, 0, 0, Device::cpu());
}

TEST_F(Comm, ReceivesTagsInReverseOrderAcrossRanks) {
    if (size() < 2) GTEST_SKIP() << "needs two ranks";
    reversed_tag_order(world(), 0, 1, Device::cpu());
    reversed_tag_order(world(), size() - 1, 0, Device::cpu());
}

void collectives(Communicator& comm, Device device) {
    const int n = comm.size();
    const Shape shape = {3, 7};
    for (DType dtype : {DType::Float32, DType::Float64, DType::Int32}) {
        if (device.is_cuda() && dtype == DType::Float64) continue;
        // rank r holds (r + 1) * i: the sum is i * n(n+1)/2, the max n * i.
        Tensor base = Tensor::arange(21, DType::Float64).reshape(shape);
        std::vector<double> mine, sum, max;
        for (double v : base.to_vector<double>()) {
            mine.push_back(v * (comm.rank() + 1));
            sum.push_back(v * n * (n + 1) / 2);
            max.push_back(v * n);
        }
        auto as_tensor = [&](const std::vector<double>& v) {
            return Tensor::from_vector(v, shape).to(dtype);
        };
        Tensor t = as_tensor(mine).to(device);
        comm.all_reduce(t, ReduceOp::Sum);
        expect_equal(t, as_tensor(sum), str("all_reduce sum ", dtype_name(dtype)));
        t = as_tensor(mine).to(device);
        comm.all_reduce(t, ReduceOp::Max);
        expect_equal(t, as_tensor(max), str("all_reduce max ", dtype_name(dtype)));
    }
    Tensor empty = Tensor::empty({0}, DType::Float32, device);
    comm.all_reduce(empty, ReduceOp::Sum);
    for (int root = 0; root < n; ++root) {
        Tensor expected = values({4, 9}, DType::Float32, 77 + static_cast<uint64_t>(root));
        Tensor t = comm.rank() == root ? expected.to(device) : mp::testing::poisoned({4, 9}, DType::Float32, device);
        comm.broadcast(t, root);
        expect_equal(t, expected, str("broadcast from root ", root));
    }
    comm.barrier();
    comm.barrier();
}

TEST_F(Comm, AllReduceBroadcastBarrier) { collectives(world(), Device::cpu()); }

TEST_F(Comm, SplitIntoSubGroups) {
    // Even and odd ranks, each group ordered by descending world rank (key = -rank).
    std::unique_ptr<Communicator> parity = world().split(rank() % 2, -rank());
    ASSERT_NE(parity, nullptr);
    std::vector<int> members;
    for (int r = size() - 1; r >= 0; --r)
        if (r % 2 == rank() % 2) members.push_back(r);
    EXPECT_EQ(parity->size(), static_cast<int>(members.size()));
    int expected_rank = 0;
    while (members[static_cast<size_t>(expected_rank)] != rank()) ++expected_rank;
    EXPECT_EQ(parity->rank(), expected_rank);
    EXPECT_EQ(parity->backend(), Backend::Mpi);
    EXPECT_EQ(parity->timeout_seconds(), world().timeout_seconds());

    Tensor t = Tensor::full({2}, rank(), DType::Int32);
    parity->all_reduce(t, ReduceOp::Sum);
    int member_sum = 0;
    for (int r : members) member_sum += r;
    EXPECT_EQ(t.to_vector<int32_t>(), std::vector<int32_t>(2, member_sum));
    if (parity->size() >= 2) ring_exchange(*parity, Device::cpu());

    // A pipeline x data grid on 4 ranks: pipelines {0, 1}, {2, 3}; data groups {0, 2}, {1, 3}.
    if (size() == 4) {
        std::unique_ptr<Communicator> pipeline = world().split(rank() / 2);
        std::unique_ptr<Communicator> data = world().split(rank() % 2);
        EXPECT_EQ(pipeline->size(), 2);
        EXPECT_EQ(pipeline->rank(), rank() % 2);
        EXPECT_EQ(data->rank(), rank() / 2);
        Tensor x = Tensor::full({3}, rank());
        data->all_reduce(x, ReduceOp::Sum);
        EXPECT_EQ(x.to_vector<float>(), std::vector<float>(3, static_cast<float>(rank() % 2 * 2 + 2)));
        round_trips(*pipeline, Device::cpu());
    }

    // A negative color joins no group.
    std::unique_ptr<Communicator> only_zero = world().split(rank() == 0 ? 0 : -1);
    EXPECT_EQ(only_zero == nullptr, rank() != 0);
    if (only_zero) {
        EXPECT_EQ(only_zero->size(), 1);
    }
}

TEST_F(Comm, ShapeMismatchFailsOnBothRanksNamingBothShapes) {
    if (size() < 2) GTEST_SKIP() << "needs two ranks";
    Tensor sent = values({4, 8}, DType::Float32, 5);
    if (rank() == 0) {
        expect_mismatch([&] { world().send(sent, 1, 3); }, {"(4, 8)", "(4, 9)", "rank 1", "tag 3"});
        expect_mismatch([&] { world().send(sent, 1, 4); }, {"float32(4, 8)", "int32(4, 8)"});
    } else if (rank() == 1) {
        Tensor expecting = Tensor::empty({4, 9});
        expect_mismatch([&] { world().recv(expecting, 0, 3); }, {"(4, 8)", "(4, 9)", "rank 0", "tag 3"});
        Tensor wrong_dtype = Tensor::empty({4, 8}, DType::Int32);
        expect_mismatch([&] { world().recv(wrong_dtype, 0, 4); }, {"float32(4, 8)", "int32(4, 8)"});
    }
    // A batch with one bad and one good transfer: both ranks throw, the good one is delivered.
    Tensor good = values({16}, DType::Float32, 6);
    if (rank() == 0) {
        expect_mismatch([&] { world().exchange({Transfer::send(sent, 1, 5), Transfer::send(good, 1, 6)}); }, {"(4, 8)"});
    } else if (rank() == 1) {
        Tensor bad_in = Tensor::empty({8, 4});
        Tensor good_in = mp::testing::poisoned({16}, DType::Float32, Device::cpu());
        expect_mismatch([&] { world().exchange({Transfer::recv(bad_in, 0, 5), Transfer::recv(good_in, 0, 6)}); },
                        {"(4, 8)", "(8, 4)"});
        expect_equal(good_in, good, "the matched transfer of a batch with a mismatch");
    }
    // The communicator is still usable afterwards.
    round_trips(world(), Device::cpu());
}

TEST_F(Comm, CollectiveMismatchFailsOnEveryRank) {
    if (size() < 2) GTEST_SKIP() << "needs two ranks";
    Tensor t = Tensor::zeros({rank() == 1 ? 4 : 3});
    expect_mismatch([&] { world().all_reduce(t, ReduceOp::Sum); }, {"all_reduce", "rank 0 float32(3)", "rank 1 float32(4)"});
    Tensor same = Tensor::zeros({3});
    expect_mismatch([&] { world().all_reduce(same, rank() == 0 ? ReduceOp::Max : ReduceOp::Sum); }, {"op/root"});
    expect_mismatch([&] { world().broadcast(same, rank() == 0 ? 1 : 0); }, {"broadcast", "op/root"});
    world().barrier();
}

TEST_F(Comm, ArgumentErrorsNameTheValues) {
    Tensor t = Tensor::zeros({2});
    expect_mismatch([&] { world().send(t, size(), 0); }, {"peer " + std::to_string(size()), "out of range"});
    expect_mismatch([&] { world().recv(t, -1, 0); }, {"peer -1"});
    expect_mismatch([&] { world().send(t, 0, -2); }, {"tag -2"});
    expect_mismatch([&] { world().send(t, 0, world().max_tag() + 1); }, {"out of range [0, "});
    expect_mismatch([&] { world().recv(Tensor(), 0, 0); }, {"undefined"});
    expect_mismatch([&] { world().exchange({Transfer::send(t, 0, 7), Transfer::send(t, 0, 7)}); },
                    {"already has a send to rank 0 with tag 7"});
    expect_mismatch([&] { world().broadcast(t, size()); }, {"root " + std::to_string(size())});
    expect_mismatch([&] { world().set_timeout_seconds(-1); }, {"-1"});
    expect_mismatch([] { parse_enum<Backend>("gloo", "comm backend"); }, {"gloo", "auto | nccl | mpi"});
    EXPECT_EQ(parse_enum<Backend>("nccl", "comm backend"), Backend::Nccl);
}

TEST_F(Comm, TimeoutDefaultComesFromTheEnvironment) {
    const char* saved = std::getenv("MINIPIPE_COMM_TIMEOUT_S");
    std::string saved_value = saved ? saved : "";
    setenv("MINIPIPE_COMM_TIMEOUT_S", "2.5", 1);
    EXPECT_EQ(default_timeout_seconds(), 2.5);
    setenv("MINIPIPE_COMM_TIMEOUT_S", "soon", 1);
    expect_mismatch([] { default_timeout_seconds(); }, {"MINIPIPE_COMM_TIMEOUT_S", "soon"});
    unsetenv("MINIPIPE_COMM_TIMEOUT_S");
    EXPECT_EQ(default_timeout_seconds(), 300.0);
    if (saved) setenv("MINIPIPE_COMM_TIMEOUT_S", saved_value.c_str(), 1);
}

// ---- the backend decision, as a pure function of the ranks' devices

std::vector<RankDevice> devices(const std::vector<std::pair<std::string, int>>& host_and_gpu) {
    std::vector<RankDevice> out;
    for (const auto& [host, gpu] : host_and_gpu) out.push_back(RankDevice{host, gpu, ""});
    return out;
}

TEST_F(Comm, AutoPicksNcclOnlyWhenEveryRankOwnsADistinctGpu) {
    BackendChoice cpu = decide_backend(Backend::Auto, devices({{"a", -1}, {"a", -1}}), true);
    EXPECT_EQ(cpu.backend, Backend::Mpi);
    EXPECT_NE(cpu.reason.find("no rank has a GPU"), std::string::npos) << cpu.reason;

    BackendChoice shared = decide_backend(Backend::Auto, devices({{"a", 0}, {"a", 1}, {"a", 0}}), true);
    EXPECT_EQ(shared.backend, Backend::Mpi);
    EXPECT_NE(shared.reason.find("ranks 0 and 2 share GPU cuda:0 on host a"), std::string::npos) << shared.reason;

    BackendChoice distinct = decide_backend(Backend::Auto, devices({{"a", 0}, {"a", 1}, {"b", 0}, {"b", 1}}), true);
    EXPECT_EQ(distinct.backend, Backend::Nccl) << distinct.reason;
    EXPECT_EQ(decide_backend(Backend::Auto, devices({{"a", 0}, {"a", 1}}), false).backend, Backend::Mpi);

    // The same index under different CUDA_VISIBLE_DEVICES is told apart by the UUID.
    std::vector<RankDevice> remapped = {{"a", 0, "uuid-x"}, {"a", 0, "uuid-y"}};
    EXPECT_EQ(decide_backend(Backend::Auto, remapped, true).backend, Backend::Nccl);
    EXPECT_EQ(decide_backend(Backend::Mpi, remapped, true).backend, Backend::Mpi);
}

TEST_F(Comm, NcclOnASharedGpuIsRefusedNamingRanksAndDevice) {
    try {
        decide_backend(Backend::Nccl, devices({{"a", 0}, {"a", 0}, {"b", 0}}), true);
        ADD_FAILURE() << "expected a refusal";
    } catch (const RuntimeError& e) {
        std::string message = e.what();
        EXPECT_NE(message.find("ranks 0 and 1 share GPU cuda:0 on host a"), std::string::npos) << message;
        EXPECT_NE(message.find("backend mpi"), std::string::npos) << message;
    }
    EXPECT_THROW(decide_backend(Backend::Nccl, devices({{"a", 0}, {"a", -1}}), true), RuntimeError);
    EXPECT_THROW(decide_backend(Backend::Nccl, devices({{"a", 0}, {"a", 1}}), false), RuntimeError);
}

// The real thing on this machine: auto decides as the rule says, and nccl where the ranks do
// not each own a GPU fails on every rank (each rank reaches here and checks its own throw).
TEST_F(Comm, BackendOnThisMachine) {
    int gpus = cuda_device_count();
    bool all_local = MpiRuntime::instance().local_size() == size();
    bool distinct_gpus = gpus > 0 && all_local && size() <= gpus;
    CommOptions options;
    options.log_choice = false;
    std::unique_ptr<Communicator> chosen = make_communicator(options);
    EXPECT_EQ(chosen->backend(), distinct_gpus && MP_NCCL && MP_CUDA ? Backend::Nccl : Backend::Mpi);
    chosen->barrier();

    if (distinct_gpus && MP_NCCL && MP_CUDA) return;
    options.backend = Backend::Nccl;
    try {
        make_communicator(options);
        ADD_FAILURE() << "backend nccl should be refused here";
    } catch (const RuntimeError& e) {
        std::string message = e.what();
        std::string expected = !(MP_NCCL && MP_CUDA) ? "no NCCL"
                               : gpus == 0           ? "no rank has a GPU"
                                                     : "share GPU cuda:";
        EXPECT_NE(message.find(expected), std::string::npos) << message;
        if (gpus > 0 && MP_NCCL) {
            EXPECT_NE(message.find("ranks 0 and"), std::string::npos) << message;
        }
    }
}

// ---- GPU: CUDA tensors over MPI (ranks sharing the GPU), NCCL on one rank

TEST_F(Comm, CudaTensorsOverMpi) {
    MP_REQUIRE_GPU();
    Device gpu = Device::cuda(MpiRuntime::instance().gpu());
    round_trips(world(), gpu);
    ring_exchange(world(), gpu);
    collectives(world(), gpu);
    // Mixed batch: a CUDA tensor and a CPU tensor to the same neighbour.
    int next = (rank() + 1) % size(), prev = (rank() + size() - 1) % size();
    Tensor cpu_in = mp::testing::poisoned({6}, DType::Int32, Device::cpu());
    Tensor gpu_in = mp::testing::poisoned({6}, DType::Float32, gpu);
    world().exchange({Transfer::send(values({6}, DType::Int32, 40 + rank()), next, 1),
                      Transfer::send(values({6}, DType::Float32, 50 + rank(), gpu), next, 2),
                      Transfer::recv(cpu_in, prev, 1), Transfer::recv(gpu_in, prev, 2)});
    expect_equal(cpu_in, values({6}, DType::Int32, 40 + prev), "cpu tensor in a mixed batch");
    expect_equal(gpu_in, values({6}, DType::Float32, 50 + prev), "cuda tensor in a mixed batch");
}

TEST_F(Comm, NcclOnOneRankSelfSendRecvAndCollectives) {
    MP_REQUIRE_GPU();
    if (!(MP_NCCL && MP_CUDA)) GTEST_SKIP() << "built without NCCL";
    // Each rank its own group of one: NCCL accepts that even when the ranks share the GPU.
    std::unique_ptr<Communicator> self = world().split(rank(), std::nullopt, Backend::Nccl);
    ASSERT_EQ(self->backend(), Backend::Nccl);
    ASSERT_EQ(self->size(), 1);
    Device gpu = Device::cuda(self->device_index());
    Tensor x = values({33, 7}, DType::Float32, 9, gpu);
    Tensor y = mp::testing::poisoned({33, 7}, DType::Float32, gpu);
    Tensor cpu_x = values({5}, DType::Float64, 10);  // CPU tensors are staged through the GPU
    Tensor cpu_y = mp::testing::poisoned({5}, DType::Float64, Device::cpu());
    self->exchange({Transfer::send(x, 0, 1), Transfer::recv(y, 0, 1), Transfer::send(cpu_x, 0, 2),
                    Transfer::recv(cpu_y, 0, 2)});
    expect_equal(y, x, "NCCL self send/recv");
    expect_equal(cpu_y, cpu_x, "NCCL self send/recv of a CPU tensor");
    round_trips(*self, gpu);  // size 1: no partner, returns at once
    Tensor z = x.clone();
    self->all_reduce(z, ReduceOp::Sum);
    expect_equal(z, x, "all_reduce over one rank");
    self->broadcast(z, 0);
    expect_equal(z, x, "broadcast over one rank");
    Tensor wrong = Tensor::empty({33, 8}, DType::Float32, gpu);
    expect_mismatch([&] { self->exchange({Transfer::send(x, 0, 3), Transfer::recv(wrong, 0, 3)}); }, {"(33, 7)", "(33, 8)"});
    self->barrier();
}

// The same reversed-order check as MpiOnOneRankReceivesTagsInReverseOrder, over NCCL: CUDA
// tensors, then CPU tensors (staged through the GPU).
TEST_F(Comm, NcclOnOneRankReceivesTagsInReverseOrder) {
    MP_REQUIRE_GPU();
    if (!(MP_NCCL && MP_CUDA)) GTEST_SKIP() << "built without NCCL";
    std::unique_ptr<Communicator> self = world().split(rank(), std::nullopt, Backend::Nccl);
    ASSERT_EQ(self->backend(), Backend::Nccl);
    ASSERT_EQ(self->size(), 1);
    reversed_tag_order(*self, 0, 0, Device::cuda(self->device_index()));
    reversed_tag_order(*self, 0, 0, Device::cpu());
}

TEST_F(Comm, NcclAcrossRanksWhenEachOwnsAGpu) {
    MP_REQUIRE_GPU();
    if (!(MP_NCCL && MP_CUDA)) GTEST_SKIP() << "built without NCCL";
    if (size() > cuda_device_count() || MpiRuntime::instance().local_size() != size())
        GTEST_SKIP() << size() << " ranks and " << cuda_device_count() << " GPU(s): the ranks share GPUs";
    CommOptions options;
    options.backend = Backend::Nccl;
    options.log_choice = false;
    std::unique_ptr<Communicator> nccl = make_communicator(options);
    Device gpu = Device::cuda(nccl->device_index());
    round_trips(*nccl, gpu);
    ring_exchange(*nccl, gpu);
    collectives(*nccl, gpu);
    reversed_tag_order(*nccl, 0, 1, gpu);
    reversed_tag_order(*nccl, 0, 1, Device::cpu());
}

// Prints this rank's failures with a [rank r] prefix (ranks other than 0 drop the default report).

}  // namespace
}  // namespace mp::comm

int main(int argc, char** argv) {
    return mp::testing::run_multi_rank_tests(argc, argv, "test_comm", mp::comm::g_world);
}
