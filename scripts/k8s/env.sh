# Settings of the Kubernetes testbed, sourced by the scripts in scripts/k8s.
# Every path and name the testbed creates derives from these; tear-down
# refuses to run when one is empty.
K8S_VERSION=${K8S_VERSION:-v1.34.4}
TETHER_CACHE=${TETHER_CACHE:-/var/cache/tether}
K8S_BIN=${K8S_BIN:-$TETHER_CACHE/k8s-$K8S_VERSION/bin}
TB_ROOT=${TB_ROOT:-/var/lib/tether-k8s}   # persistent: containerd root, etcd data, kubelet root
TB_RUN=${TB_RUN:-/run/tether-k8s}         # pids, sockets, certs, kubeconfig, logs
TB_BRIDGE=${TB_BRIDGE:-tk8s0}
TB_POD_CIDR=${TB_POD_CIDR:-10.244.0.0/16}
TB_NODE_CIDR=${TB_NODE_CIDR:-10.244.0.0/24}  # what the controller manager gives the (first) node
TB_NODE_IP=${TB_NODE_IP:-10.244.0.1}         # the bridge address = kubelet --node-ip
TB_SVC_CIDR=${TB_SVC_CIDR:-10.245.0.0/16}
TB_API_IP=${TB_API_IP:-10.245.0.1}
TB_DNS_IP=${TB_DNS_IP:-10.245.0.10}
TB_NODE=${TB_NODE:-tether-node}
TB_API_PORT=${TB_API_PORT:-16443}
TB_ETCD_PORT=${TB_ETCD_PORT:-12379}
TB_ETCD_PEER=${TB_ETCD_PEER:-12380}
TB_KUBELET_PORT=${TB_KUBELET_PORT:-20250}
KUBECONFIG_TB=${KUBECONFIG_TB:-$TB_RUN/admin.kubeconfig}
CTR_SOCK=$TB_RUN/containerd.sock

tb_require() {
	local v
	for v in K8S_VERSION TETHER_CACHE K8S_BIN TB_ROOT TB_RUN TB_BRIDGE TB_POD_CIDR TB_NODE_IP TB_SVC_CIDR TB_NODE; do
		if [ -z "${!v:-}" ]; then
			echo "k8s testbed: $v is empty: refusing to run" >&2
			exit 2
		fi
	done
	case "$TB_ROOT$TB_RUN" in *" "*) echo "k8s testbed: spaces in paths: refusing" >&2; exit 2 ;; esac
	[ "$TB_ROOT" != / ] && [ "$TB_RUN" != / ] || { echo "k8s testbed: root paths: refusing" >&2; exit 2; }
}

tb_kubectl() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_TB" "$@"; }
tb_ctr() { ctr -a "$CTR_SOCK" -n k8s.io "$@"; }

# tb_netns_delete NAME: removes the network namespace /run/netns/NAME for
# good: ends the processes still inside it (TERM, then KILL), unmounts every
# bind mount of its file (mounted twice, `ip netns delete` unmounts one and
# the unlink fails "busy"), removes the file; retries briefly. Only for
# namespaces the testbed created: the caller decides that. Fails (1) if the
# file is still there.
tb_netns_delete() {
	local ns=$1 f pids try i
	case "$ns" in "" | */* | . | ..) return 2 ;; esac
	f=/run/netns/$ns
	for try in 1 2 3 4 5; do
		[ -e "$f" ] || return 0
		pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
		if [ -n "${pids// /}" ]; then
			# shellcheck disable=SC2086 # a list of PIDs
			kill -TERM $pids 2>/dev/null
			for _ in $(seq 20); do
				i=0
				for p in $pids; do kill -0 "$p" 2>/dev/null && i=1; done
				[ "$i" = 0 ] && break
				sleep 0.1
			done
			# shellcheck disable=SC2086
			[ "$i" = 0 ] || kill -KILL $pids 2>/dev/null
		fi
		for i in $(seq 10); do
			awk -v f="$f" '$2 == f {found = 1} END {exit !found}' /proc/self/mounts || break
			umount -l "$f" 2>/dev/null || break
		done
		rm -f "$f" 2>/dev/null
		[ -e "$f" ] || return 0
		sleep 0.2
	done
	return 1
}

# tb_netns_clean OURS [PREFIX]: deletes (tb_netns_delete) the network
# namespaces named PREFIX* (default cni-, the CRI's) that are ours: listed in
# OURS (names, one a line: the netns of our sandboxes) or holding an address
# of our node CIDR. Any other namespace is left alone.
tb_netns_clean() {
	local ours=$1 prefix=${2:-cni-} ns
	[ -n "$prefix" ] || return 2
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
		case "$ns" in "$prefix"*) ;; *) continue ;; esac
		if printf '%s\n' "$ours" | grep -qxF -- "$ns" ||
			ip netns exec "$ns" ip -o addr 2>/dev/null | grep -q " ${TB_NODE_CIDR%.*}\."; then
			tb_netns_delete "$ns" || echo "k8s testbed: network namespace $ns is still there (busy)" >&2
		fi
	done
}
