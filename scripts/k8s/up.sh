#!/usr/bin/env bash
# Starts a single-node Kubernetes ($K8S_VERSION) for the tests: etcd (Debian),
# a second containerd (own root/state/socket, CRI with restrict_oom_score_adj),
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy
# (binaries from scripts/k8s/build.sh), the bridge CNI and CoreDNS.
# Idempotent: a running, healthy testbed is reused. Prints the kubeconfig path.
# Exit codes: 0 up; 3 a prerequisite is missing and CI is not "true" (tests
# skip); anything else is a failure. Tear down with scripts/k8s/down.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/env.sh"
tb_require

missing() {
	echo "k8s testbed: $*" >&2
	[ "${CI:-}" = true ] && exit 1
	exit 3
}
log() { echo "k8s testbed: $*" >&2; }
T0=$(date +%s.%N)
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1fs", b-a}'; }

[ "$(id -u)" = 0 ] || missing "needs root"
mkdir -p "$TB_RUN"
exec 8>"$TB_RUN.lock"
flock -w 600 8 || { log "could not take $TB_RUN.lock"; exit 1; }

healthy() {
	[ -f "$TB_RUN/ready" ] && [ -x "$K8S_BIN/kubectl" ] &&
		tb_kubectl get --raw /readyz >/dev/null 2>&1 &&
		[ "$(tb_kubectl get node "$TB_NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
if healthy; then
	echo "$KUBECONFIG_TB"
	exit 0
fi
if [ -f "$TB_RUN/pids/kube-apiserver.pid" ] || [ -f "$TB_RUN/ready" ]; then
	log "an unhealthy testbed is around: tearing it down first"
	"$HERE/down.sh" >&2 || true
	mkdir -p "$TB_RUN"
fi

# --- prerequisites --------------------------------------------------------
need_pkgs=""
command -v etcd >/dev/null || need_pkgs="$need_pkgs etcd-server"
command -v containerd >/dev/null || need_pkgs="$need_pkgs containerd"
command -v socat >/dev/null || need_pkgs="$need_pkgs socat"
command -v conntrack >/dev/null || need_pkgs="$need_pkgs conntrack"
[ -x /usr/lib/cni/bridge ] || need_pkgs="$need_pkgs containernetworking-plugins"
command -v openssl >/dev/null || need_pkgs="$need_pkgs openssl"
if [ -n "$need_pkgs" ]; then
	log "installing$need_pkgs"
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need_pkgs; } >"$TB_RUN/apt.log" 2>&1 ||
		missing "could not install$need_pkgs (see $TB_RUN/apt.log)"
fi
"$HERE/../docker.sh" || true
docker info >/dev/null 2>&1 || missing "no Docker daemon (scripts/docker.sh) to build the images"
if ! "$HERE/build.sh" >"$TB_RUN/build.log" 2>&1; then
	tail -20 "$TB_RUN/build.log" >&2
	missing "building the Kubernetes binaries failed (see $TB_RUN/build.log)"
fi
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl coredns pause; do
	[ -x "$K8S_BIN/$b" ] || missing "$K8S_BIN/$b missing"
done
log "prerequisites ready after $(elapsed)"

mkdir -p "$TB_ROOT" "$TB_RUN"/{pids,logs,pki,cni/net.d} "$TB_ROOT"/{etcd,containerd,kubelet,cni-ipam,opt}
: >"$TB_RUN/created"   # marker: tear-down touches only testbeds with it

# Daemons keep no descriptor of the caller beyond stdio: an inherited lock
# (flock around a test run) or pipe would otherwise be held for the
# testbed's lifetime.
start() { # name cmd...
	local name=$1; shift
	setsid "$@" >"$TB_RUN/logs/$name.log" 2>&1 </dev/null 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
	echo $! >"$TB_RUN/pids/$name.pid"
}
wait_for() { # seconds what cmd...
	local n=$(( $1 * 10 )) what=$2; shift 2
	for ((i = 0; i < n; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
	log "timed out waiting for $what"; return 1
}

# --- network --------------------------------------------------------------
if ! ip link show "$TB_BRIDGE" >/dev/null 2>&1; then
	ip link add "$TB_BRIDGE" type bridge
	echo "$TB_BRIDGE" >"$TB_RUN/bridge-created"
fi
ip addr replace "$TB_NODE_IP/${TB_NODE_CIDR#*/}" dev "$TB_BRIDGE"
ip link set "$TB_BRIDGE" up
# Cluster ranges never leave by the default route: the pod range outside this
# node's subnet is unreachable, the service range goes onto the bridge (a
# ClusterIP dialled before kube-proxy's rules exist dies there).
ip route replace unreachable "$TB_POD_CIDR"
ip route replace "$TB_SVC_CIDR" dev "$TB_BRIDGE"
echo "$TB_POD_CIDR $TB_SVC_CIDR" >"$TB_RUN/routes-created"
sysctl -qw net.ipv4.ip_forward=1
# Docker sets the FORWARD policy to DROP and br_netfilter sends bridged
# pod-to-pod frames through it: accept what enters or leaves our bridge.
for dir in -i -o; do
	iptables -C FORWARD $dir "$TB_BRIDGE" -m comment --comment tether-k8s-testbed -j ACCEPT 2>/dev/null ||
		iptables -I FORWARD 1 $dir "$TB_BRIDGE" -m comment --comment tether-k8s-testbed -j ACCEPT
done
[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] && sysctl -qw net.bridge.bridge-nf-call-iptables=1 || true

# --- PKI ------------------------------------------------------------------
P=$TB_RUN/pki
if [ ! -f "$P/ca.crt" ]; then
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$P/ca.key" -out "$P/ca.crt" -days 3650 -subj "/CN=tether-testbed-ca" 2>/dev/null
	cert() { # name subj [san]
		openssl req -newkey rsa:2048 -nodes -keyout "$P/$1.key" -out "$P/$1.csr" -subj "$2" 2>/dev/null
		local ext="$P/$1.ext"
		echo "basicConstraints=CA:FALSE" >"$ext"
		echo "keyUsage=digitalSignature,keyEncipherment" >>"$ext"
		echo "extendedKeyUsage=serverAuth,clientAuth" >>"$ext"
		[ -n "${3:-}" ] && echo "subjectAltName=$3" >>"$ext"
		openssl x509 -req -in "$P/$1.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial -out "$P/$1.crt" -days 3650 -extfile "$ext" 2>/dev/null
	}
	cert apiserver "/CN=kube-apiserver" "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$TB_API_IP,IP:$TB_NODE_IP"
	cert admin "/O=system:masters/CN=tether-testbed-admin"
	openssl genrsa -out "$P/sa.key" 2048 2>/dev/null
	openssl rsa -in "$P/sa.key" -pubout -out "$P/sa.pub" 2>/dev/null
fi
SERVER=https://$TB_NODE_IP:$TB_API_PORT
cat >"$KUBECONFIG_TB" <<KC
apiVersion: v1
kind: Config
clusters:
- name: tether-testbed
  cluster:
    server: $SERVER
    certificate-authority-data: $(base64 -w0 "$P/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 "$P/admin.crt")
    client-key-data: $(base64 -w0 "$P/admin.key")
contexts:
- name: tether-testbed
  context: {cluster: tether-testbed, user: admin, namespace: default}
current-context: tether-testbed
KC

# --- etcd -----------------------------------------------------------------
start etcd etcd --name tether-testbed --data-dir "$TB_ROOT/etcd" \
	--listen-client-urls "http://127.0.0.1:$TB_ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$TB_ETCD_PORT" \
	--listen-peer-urls "http://127.0.0.1:$TB_ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$TB_ETCD_PEER" \
	--initial-cluster "tether-testbed=http://127.0.0.1:$TB_ETCD_PEER" --unsafe-no-fsync

# --- containerd (a second one, for the kubelet) ---------------------------
cat >"$TB_RUN/containerd.toml" <<TOML
version = 2
root = "$TB_ROOT/containerd"
state = "$TB_RUN/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CTR_SOCK"
[ttrpc]
  address = "$TB_RUN/containerd-ttrpc.sock"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$TB_ROOT/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/tether/pause:local"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$TB_RUN/cni/net.d"
TOML
cat >"$TB_RUN/cni/net.d/10-tether.conflist" <<CNI
{
  "cniVersion": "0.4.0",
  "name": "tether-testbed",
  "plugins": [
    {"type": "bridge", "bridge": "$TB_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$TB_ROOT/cni-ipam",
              "ranges": [[{"subnet": "$TB_NODE_CIDR", "gateway": "$TB_NODE_IP"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
start containerd containerd --config "$TB_RUN/containerd.toml"
wait_for 20 containerd ctr -a "$CTR_SOCK" version

# --- images: pause, CoreDNS (FROM scratch, no registry) --------------------
IMG=$TB_RUN/images
mkdir -p "$IMG/pause" "$IMG/coredns"
cp "$K8S_BIN/pause" "$IMG/pause/pause"
printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$IMG/pause/Dockerfile"
cp "$K8S_BIN/coredns" "$IMG/coredns/coredns"
cat >"$IMG/coredns/Corefile" <<'CF'
.:53 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
CF
printf 'FROM scratch\nCOPY coredns /coredns\nCOPY Corefile /Corefile\nENTRYPOINT ["/coredns", "-conf", "/Corefile"]\n' >"$IMG/coredns/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t tether/pause:local "$IMG/pause" >/dev/null
DOCKER_BUILDKIT=0 docker build -q -t tether/coredns:local "$IMG/coredns" >/dev/null
docker save tether/pause:local tether/coredns:local | tb_ctr images import - >/dev/null
log "containerd and images ready after $(elapsed)"

# --- control plane --------------------------------------------------------
start kube-apiserver "$K8S_BIN/kube-apiserver" \
	--etcd-servers "http://127.0.0.1:$TB_ETCD_PORT" \
	--bind-address "$TB_NODE_IP" --secure-port "$TB_API_PORT" --advertise-address "$TB_NODE_IP" \
	--tls-cert-file "$P/apiserver.crt" --tls-private-key-file "$P/apiserver.key" \
	--client-ca-file "$P/ca.crt" \
	--kubelet-client-certificate "$P/admin.crt" --kubelet-client-key "$P/admin.key" \
	--kubelet-preferred-address-types InternalIP \
	--service-cluster-ip-range "$TB_SVC_CIDR" \
	--service-account-issuer https://kubernetes.default.svc.cluster.local \
	--service-account-key-file "$P/sa.pub" --service-account-signing-key-file "$P/sa.key" \
	--authorization-mode Node,RBAC --allow-privileged=true \
	--enable-priority-and-fairness=false
wait_for 60 kube-apiserver tb_kubectl get --raw /readyz
log "kube-apiserver ready after $(elapsed)"

start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
	--kubeconfig "$KUBECONFIG_TB" --authentication-kubeconfig "$KUBECONFIG_TB" --authorization-kubeconfig "$KUBECONFIG_TB" \
	--secure-port 0 --leader-elect=false \
	--service-account-private-key-file "$P/sa.key" --root-ca-file "$P/ca.crt" --use-service-account-credentials \
	--allocate-node-cidrs --cluster-cidr "$TB_POD_CIDR" --node-cidr-mask-size "${TB_NODE_CIDR#*/}" \
	--service-cluster-ip-range "$TB_SVC_CIDR"
start kube-scheduler "$K8S_BIN/kube-scheduler" \
	--kubeconfig "$KUBECONFIG_TB" --authentication-kubeconfig "$KUBECONFIG_TB" --authorization-kubeconfig "$KUBECONFIG_TB" \
	--leader-elect=false --bind-address 127.0.0.1 --secure-port 20259

# --- node -----------------------------------------------------------------
cat >"$TB_RUN/resolv.conf" <<'RC'
nameserver 127.0.0.1
options ndots:1
RC
cat >"$TB_RUN/kubelet.yaml" <<KY
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $TB_NODE_IP
port: $TB_KUBELET_PORT
healthzPort: 0
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CTR_SOCK
failSwapOn: false
clusterDNS: [$TB_DNS_IP]
clusterDomain: cluster.local
resolvConf: $TB_RUN/resolv.conf
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
serializeImagePulls: false
registerNode: true
localStorageCapacityIsolation: false
KY
start kubelet "$K8S_BIN/kubelet" --config "$TB_RUN/kubelet.yaml" --kubeconfig "$KUBECONFIG_TB" \
	--root-dir "$TB_ROOT/kubelet" --cert-dir "$TB_RUN/kubelet-pki" \
	--hostname-override "$TB_NODE" --node-ip "$TB_NODE_IP"
start kube-proxy "$K8S_BIN/kube-proxy" --kubeconfig "$KUBECONFIG_TB" --hostname-override "$TB_NODE" \
	--proxy-mode iptables --cluster-cidr "$TB_POD_CIDR" --masquerade-all \
	--healthz-bind-address 127.0.0.1:20256 --metrics-bind-address 127.0.0.1:20249 \
	--conntrack-max-per-core 0

node_ready() {
	[ "$(tb_kubectl get node "$TB_NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ] &&
		! tb_kubectl get node "$TB_NODE" -o jsonpath='{.spec.taints[*].key}' | grep -q not-ready
}
wait_for 90 "node $TB_NODE Ready without the not-ready taint" node_ready
log "node ready after $(elapsed)"
wait_for 30 "the default ServiceAccount" tb_kubectl -n default get serviceaccount default

# --- CoreDNS --------------------------------------------------------------
tb_kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      containers:
      - name: coredns
        image: tether/coredns:local
        imagePullPolicy: Never
        ports: [{containerPort: 53, protocol: UDP, name: dns}, {containerPort: 53, protocol: TCP, name: dns-tcp}]
        readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 1}
        resources: {limits: {memory: 128Mi}, requests: {cpu: 50m, memory: 32Mi}}
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $TB_DNS_IP
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
YAML
tb_kubectl -n kube-system rollout status deployment/coredns --timeout=90s >/dev/null
date +%s >"$TB_RUN/ready"
log "up after $(elapsed)"
echo "$KUBECONFIG_TB"
