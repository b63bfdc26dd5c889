#!/usr/bin/env bash
# Multi-node launch, tested on one machine (run by `make test` when MPI is built): two network namespaces
# joined by a veth pair play two nodes, each with its own address and host name; `mpirun --hostfile` starts
# a 2-stage train_gpt across them, reaching the second "node" through Open MPI's rsh agent
# (tests/support/netns_rsh_agent.sh, where a cluster would use ssh). Checks: the run completes; each rank
# ran in its own node's namespace; the activations crossed the veth link; the parameter checksum is the
# one a plain one-machine 2-rank run gives. Without root / CAP_NET_ADMIN, or under an MPI other than
# Open MPI 4, it reports "skipped" with the reason (an environment limit) and exits 0.
# Usage: run_multinode_netns.sh BUILD_DIR
set -u
build=${1:?usage: run_multinode_netns.sh BUILD_DIR}
MPIRUN=${MPIRUN:-mpirun}
repo=$(cd "$(dirname "$0")/.." && pwd)
agent="$repo/tests/support/netns_rsh_agent.sh"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export MINIPIPE_COMM_TIMEOUT_S=${MINIPIPE_COMM_TIMEOUT_S:-20}
run_limit_s=30   # each mpirun is killed past this (the two runs take about 1.5 s each on 2 cores)
passed=0; failed=0; skipped=0; failures=()

report() {
    echo "==== multi-node test (2 network namespaces as 2 hosts, mpirun --hostfile)"
    printf '  %-28s ran %4d  passed %4d  skipped %4d  failed %4d\n' "multinode_netns" \
        $((passed + failed + skipped)) "$passed" "$skipped" "$failed"
}
skip() {  # reason: the environment cannot host the test; says so and exits 0
    skipped=$((skipped + 1))
    echo "  skipped multinode_netns (environment, not a failure): $1"
    report
    exit 0
}

# ---- what the environment must allow
[ "$(id -u)" = 0 ] || skip "not root: network namespaces need CAP_NET_ADMIN"
command -v ip >/dev/null || skip "no 'ip' command (iproute2)"
command -v unshare >/dev/null || skip "no 'unshare' command (util-linux)"
mpi_version=$("$MPIRUN" --version 2>/dev/null | head -n 1)
case $mpi_version in
    *"Open MPI"*" 4."*) ;;
    *) skip "'$MPIRUN' is '$mpi_version'; the launch flags here (plm_rsh_agent, oob_tcp_if_include) are Open MPI 4's" ;;
esac

# ---- two "nodes": namespaces named after this shell's pid, so parallel runs do not collide
node0=mpnode0_$$
node1=mpnode1_$$
address0=10.77.0.1
address1=10.77.0.2
out=$(mktemp -d)
remove_namespace() {  # kills what still runs inside (only processes of this test's namespaces), deletes it
    local pid
    for pid in $(ip netns pids "$1" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    ip netns del "$1" 2>/dev/null
}
cleanup() {
    remove_namespace "$node0"
    remove_namespace "$node1"   # the veth pair goes with its namespaces
    rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Namespaces left by an aborted run (its pid gone) are removed first.
for namespace in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    case $namespace in
        mpnode[01]_*) kill -0 "${namespace#*_}" 2>/dev/null || remove_namespace "$namespace" ;;
    esac
done
setup() {
    ip netns add "$node0" && ip netns add "$node1" &&
    ip link add mpveth0 netns "$node0" type veth peer name mpveth1 netns "$node1" &&
    ip -n "$node0" addr add "$address0/24" dev mpveth0 && ip -n "$node1" addr add "$address1/24" dev mpveth1 &&
    ip -n "$node0" link set lo up && ip -n "$node1" link set lo up &&
    ip -n "$node0" link set mpveth0 up && ip -n "$node1" link set mpveth1 up &&
    ip netns exec "$node0" unshare --uts true
}
if ! setup >"$out/setup.log" 2>&1; then
    skip "cannot build two network namespaces with a veth pair here: $(tr '\n' ' ' <"$out/setup.log")"
fi

# ---- the run across the two nodes, and the same run on one machine
tiny_gpt=(--config examples/configs/demo.json --set model.layers=2 --set model.channels=32 --set model.context=16
          --set micro_batch_size=2 --set micro_batches=4 --set pipeline.stages=2 --set steps=3 --set log.every=1
          --set trace.path= --set trace.svg= --set checkpoint.dir=)
as_root=(); [ "$(id -u)" = 0 ] && as_root=(--allow-run-as-root)
printf '%s slots=1\n%s slots=1\n' "$address0" "$address1" >"$out/hosts"
export MINIPIPE_NETNS_HOSTS="$address0=$node0=mp-node0 $address1=$node1=mp-node1"
export MINIPIPE_NETNS_AGENT_LOG="$out/agent.log"
# mpirun runs on the first node (as on a cluster's first host): the hostfile's 10.77.0.1 is local to it,
# 10.77.0.2 is reached through the agent. Its daemons and the ranks talk TCP on the veth subnet only.
multinode=("$MPIRUN" "${as_root[@]}" --hostfile "$out/hosts" -np 2 --mca plm_rsh_agent "$agent"
           --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24
           -x OMP_WAIT_POLICY -x MINIPIPE_COMM_TIMEOUT_S)
# Each rank writes where it runs (host name, network namespace) before becoming train_gpt.
mark_rank='echo "$(hostname) $(readlink /proc/self/ns/net)" >"$0/rank$OMPI_COMM_WORLD_RANK"; exec "$@"'

run() {  # name, then the command; records pass/fail, keeps the log
    local name=$1; shift
    "$@" >"$out/$name.log" 2>&1
    local status=$?
    if [ $status -eq 0 ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1)); failures+=("$name")
        if [ $status -eq 124 ] || [ $status -eq 137 ]; then
            echo "---- $name: still running after $run_limit_s s, killed; its output:"
        else
            echo "---- $name failed (exit status $status); its output:"
        fi
        tail -n 30 "$out/$name.log"
    fi
}
check() {  # name, description of what was wrong, then the test command
    local name=$1 what=$2; shift 2
    if "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1)); failures+=("$name"); echo "---- $name: $what"
    fi
}

run two_nodes ip netns exec "$node0" unshare --uts sh -c 'hostname mp-node0 && exec "$@"' sh \
    timeout -k 5 $run_limit_s "${multinode[@]}" sh -c "$mark_rank" "$out" "$build/examples/train_gpt" "${tiny_gpt[@]}" \
    --summary "$out/two_nodes.json"
run one_machine timeout -k 5 $run_limit_s "$MPIRUN" "${as_root[@]}" --oversubscribe -np 2 -x OMP_WAIT_POLICY \
    -x MINIPIPE_COMM_TIMEOUT_S "$build/examples/train_gpt" "${tiny_gpt[@]}" --summary "$out/one_machine.json"

check launched_through_agent "mpirun did not reach $address1 through the rsh agent" \
    grep -q "^agent: $address1 -> namespace $node1" "$out/agent.log"
expected0="mp-node0 $(ip netns exec "$node0" readlink /proc/self/ns/net)"
expected1="mp-node1 $(ip netns exec "$node1" readlink /proc/self/ns/net)"
rank0=$(cat "$out/rank0" 2>/dev/null); rank1=$(cat "$out/rank1" 2>/dev/null)
check rank0_on_node0 "rank 0 ran at '$rank0', expected '$expected0'" [ "$rank0" = "$expected0" ]
check rank1_on_node1 "rank 1 ran at '$rank1', expected '$expected1'" [ "$rank1" = "$expected1" ]
# Stage 0 sends 3 steps x 4 micro-batches of a [2, 16, 32] float32 activation (4096 bytes) to stage 1,
# and gets as many gradients back: at least 49152 bytes must have arrived on each end of the link.
least_bytes=$((3 * 4 * 2 * 16 * 32 * 4))
received0=$(ip netns exec "$node0" cat /sys/class/net/mpveth0/statistics/rx_bytes 2>/dev/null || echo 0)
received1=$(ip netns exec "$node1" cat /sys/class/net/mpveth1/statistics/rx_bytes 2>/dev/null || echo 0)
check traffic_over_the_link "bytes received over the veth link: node0 $received0, node1 $received1 (< $least_bytes)" \
    [ "$received0" -ge $least_bytes -a "$received1" -ge $least_bytes ]
checksum() { grep -o '"parameter_checksum": *"[0-9a-f]*"' "$1" 2>/dev/null; }
two_nodes=$(checksum "$out/two_nodes.json"); one_machine=$(checksum "$out/one_machine.json")
check checksum_equals_one_machine "checksums differ: two nodes '$two_nodes', one machine '$one_machine'" \
    [ -n "$two_nodes" -a "$two_nodes" = "$one_machine" ]

report
if [ "$failed" -gt 0 ]; then echo "FAILED: ${failures[*]}"; exit 1; fi
