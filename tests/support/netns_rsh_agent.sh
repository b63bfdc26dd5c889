#!/bin/sh
# Open MPI "rsh agent" for tests/run_multinode_netns.sh: where ssh would log into a node, this enters the
# network namespace that plays that node, under its own host name (a UTS namespace), and runs the command.
# Open MPI calls it as `agent HOST COMMAND...` (the command is one shell line, as ssh would pass it on).
# MINIPIPE_NETNS_HOSTS maps hosts: "ADDRESS=NAMESPACE=HOSTNAME ..."; MINIPIPE_NETNS_AGENT_LOG, if set,
# gets one line per launch (the test checks that the remote node was reached this way).
host=$1
shift
for entry in $MINIPIPE_NETNS_HOSTS; do
    address=${entry%%=*}
    rest=${entry#*=}
    if [ "$address" = "$host" ]; then
        namespace=${rest%%=*}
        hostname=${rest#*=}
        if [ -n "$MINIPIPE_NETNS_AGENT_LOG" ]; then
            echo "agent: $host -> namespace $namespace, host name $hostname: $*" >>"$MINIPIPE_NETNS_AGENT_LOG"
        fi
        exec ip netns exec "$namespace" unshare --uts sh -c "hostname $hostname && $*"
    fi
done
echo "netns_rsh_agent: host '$host' is not in MINIPIPE_NETNS_HOSTS ('$MINIPIPE_NETNS_HOSTS')" >&2
exit 255
