#!/usr/bin/env bash
# Tears the Kubernetes testbed down: only what up.sh created. Refuses to run
# with empty settings or without up.sh's marker. Processes are ended by the
# PIDs up.sh recorded; mounts are unmounted only under the kubelet's and
# containerd's own directories; network namespaces only those of our pods;
# iptables: `kube-proxy --cleanup` and the kubelet's KUBE-FIREWALL /
# KUBE-KUBELET-CANARY chains; routes and the bridge only as recorded. With --purge the persistent root (etcd data, containerd
# images) is removed too.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/env.sh"
tb_require
log() { echo "k8s testbed down: $*" >&2; }

if [ ! -f "$TB_RUN/created" ]; then
	log "no testbed at $TB_RUN (marker missing): nothing to do"
	exit 0
fi
rm -f "$TB_RUN/ready"

# Pods first (their containers and mounts), while the kubelet still runs.
if [ -f "$TB_RUN/pids/kube-apiserver.pid" ] && [ -x "$K8S_BIN/kubectl" ]; then
	timeout 20 "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_TB" delete pods --all --all-namespaces --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
fi

stop() { # name
	local f="$TB_RUN/pids/$1.pid" pid
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	fi
	rm -f "$f"
}
for n in kube-proxy kubelet kube-scheduler kube-controller-manager; do stop "$n"; done

# Containers of our containerd: stop the shims through containerd itself.
# First note the network namespaces of their pods (the sandbox's spec names
# it): those are ours even when their addresses are gone.
ours_netns=
if [ -S "$CTR_SOCK" ]; then
	ours_netns=$(for c in $(tb_ctr containers list -q 2>/dev/null); do tb_ctr containers info "$c" 2>/dev/null; done |
		grep -oE '/run/netns/cni-[A-Za-z0-9_-]+' | sed 's#.*/##' | sort -u)
	for t in $(ctr -a "$CTR_SOCK" -n k8s.io tasks list -q 2>/dev/null); do
		ctr -a "$CTR_SOCK" -n k8s.io tasks kill -s KILL "$t" >/dev/null 2>&1 || true
	done
	sleep 0.5
	for t in $(ctr -a "$CTR_SOCK" -n k8s.io tasks list -q 2>/dev/null); do
		ctr -a "$CTR_SOCK" -n k8s.io tasks delete -f "$t" >/dev/null 2>&1 || true
	done
	for c in $(ctr -a "$CTR_SOCK" -n k8s.io containers list -q 2>/dev/null); do
		ctr -a "$CTR_SOCK" -n k8s.io containers delete "$c" >/dev/null 2>&1 || true
	done
fi
stop containerd
stop kube-apiserver
stop etcd
# Mounts strictly under our own directories, deepest first.
for base in "$TB_ROOT/kubelet" "$TB_RUN/containerd" "$TB_ROOT/containerd"; do
	case "$base" in /var/lib/tether-k8s/*|/run/tether-k8s/*|"$TB_ROOT"/*|"$TB_RUN"/*) ;; *) continue ;; esac
	[ -n "$base" ] && [ "$base" != / ] || continue
	awk -v b="$base/" 'index($2, b) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
done
# Network namespaces the CRI created for our pods.
tb_netns_clean "$ours_netns"

# iptables: kube-proxy's own cleanup, then the kubelet's chains.
[ -x "$K8S_BIN/kube-proxy" ] && "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
for t in filter nat mangle; do
	for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-MARK-DROP KUBE-POSTROUTING KUBE-MARK-MASQ; do
		iptables -t "$t" -S "$chain" >/dev/null 2>&1 || continue
		iptables -t "$t" -S | awk -v c="$chain" '$1 == "-A" && $0 ~ ("-j " c "( |$)") {print}' | while read -r rule; do
			eval "iptables -t $t ${rule/-A/-D}" 2>/dev/null || true
		done
		iptables -t "$t" -F "$chain" 2>/dev/null || true
		iptables -t "$t" -X "$chain" 2>/dev/null || true
	done
done

for dir in -i -o; do
	while iptables -D FORWARD $dir "$TB_BRIDGE" -m comment --comment tether-k8s-testbed -j ACCEPT 2>/dev/null; do :; done
done

# Routes and the bridge, as recorded.
if [ -f "$TB_RUN/routes-created" ]; then
	ip route del unreachable "$TB_POD_CIDR" 2>/dev/null || true
	ip route del "$TB_SVC_CIDR" dev "$TB_BRIDGE" 2>/dev/null || true
fi
if [ -f "$TB_RUN/bridge-created" ] && [ "$(cat "$TB_RUN/bridge-created")" = "$TB_BRIDGE" ]; then
	ip link del "$TB_BRIDGE" 2>/dev/null || true
fi

rm -rf --one-file-system "$TB_RUN/containerd" "$TB_RUN/pids" "$TB_RUN/cni" "$TB_RUN/kubelet-pki" 2>/dev/null || true
rm -rf --one-file-system "$TB_ROOT/kubelet" "$TB_ROOT/cni-ipam" "$TB_ROOT/etcd" 2>/dev/null || true
if [ "${1:-}" = --purge ]; then
	rm -rf --one-file-system "$TB_ROOT" 2>/dev/null || true
fi
rm -f "$TB_RUN/created" "$TB_RUN/bridge-created" "$TB_RUN/routes-created"
log "done"
