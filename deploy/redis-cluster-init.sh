#!/bin/sh
# Form a Redis Cluster of the given nodes, masters only, once; then wait until
# every node serves every slot, is linked to every other node and hands out
# their host names.
#
#   redis-cluster-init.sh HOST:PORT HOST:PORT HOST:PORT...
#
# Safe to run again: a cluster that is already formed (its nodes.conf lives in
# each node's volume) is only reintroduced, in case the containers came back
# with other addresses. Needs only sh, getent, grep and redis-cli, all in the
# redis:7 image. Exits non-zero if the cluster is not ready within
# CLUSTER_INIT_TIMEOUT seconds (default 60).
set -eu

if [ "$#" -lt 3 ]; then
    echo "usage: $0 HOST:PORT HOST:PORT HOST:PORT..." >&2
    exit 2
fi
timeout=${CLUSTER_INIT_TIMEOUT:-60}

cli() {  # cli HOST:PORT COMMAND...
    _target=$1
    shift
    redis-cli -h "${_target%:*}" -p "${_target##*:}" "$@"
}

# The cluster bus works with addresses, not names: each node's IPv4 address now.
address() {
    set -- $(getent ahostsv4 "${1%:*}")
    if [ "$#" -eq 0 ]; then
        echo "cannot resolve a node's host name" >&2
        exit 1
    fi
    echo "$1"
}
bus_port() {  # the cluster bus port of node $1 (0 in its config means port + 10000)
    _bus=$(cli "$1" config get cluster-port 2>/dev/null | tail -n 1)
    case "$_bus" in
        '' | 0 | *[!0-9]*) echo $((${1##*:} + 10000)) ;;
        *) echo "$_bus" ;;
    esac
}
addresses=""
for node in "$@"; do
    addresses="$addresses $(address "$node"):${node##*:}"
done

ready() {  # every node serves all slots, is linked to every other, and knows their names
    for node in $addresses; do
        cli "$node" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
        # A node goes on saying "ok" for a while after its links broke: check them.
        links=$(cli "$node" cluster nodes 2>/dev/null) || return 1
        if printf '%s\n' "$links" | grep -v ' connected' | grep -q .; then
            return 1
        fi
        if printf '%s\n' "$links" | grep -q 'fail'; then
            return 1
        fi
        # A node whose name is not known yet shows up as "?" in CLUSTER SLOTS.
        slots=$(cli "$node" cluster slots 2>/dev/null) || return 1
        [ -n "$slots" ] || return 1
        if printf '%s\n' "$slots" | grep -qx '?'; then
            return 1
        fi
    done
}

if cli "$1" cluster info | grep -q '^cluster_slots_assigned:16384'; then
    echo "cluster already formed"
    # nodes.conf remembers the addresses the nodes had. Introduce each node to every
    # other at its address now: a node that meets a node it knows updates its address.
    for from in $addresses; do
        for to in $addresses; do
            [ "$from" = "$to" ] ||
                cli "$from" cluster meet "${to%:*}" "${to##*:}" "$(bus_port "$to")" >/dev/null ||
                true
        done
    done
else
    echo "creating cluster of$addresses"
    # Fails (and so does this script) if a node is not empty, e.g. in another cluster.
    # shellcheck disable=SC2086
    redis-cli --cluster create $addresses --cluster-replicas 0 --cluster-yes
fi

waited=0
until ready; do
    if [ "$waited" -ge "$timeout" ]; then
        echo "cluster not ready after ${timeout} s" >&2
        for node in $addresses; do
            echo "--- $node" >&2
            cli "$node" cluster nodes >&2 || true
        done
        exit 1
    fi
    sleep 1
    waited=$((waited + 1))
done
echo "cluster ready:$addresses"
