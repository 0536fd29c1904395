# shellcheck shell=bash
# The real node of the local cluster, sourced by cluster.sh (--real-node or
# MEDIASTACK_REAL_NODE=1). It needs root (network namespaces, mounts, runc).
#
# Each cluster gets an index I (1..250, a lock under /run) and, for it:
#
#   netns ms<I>-node  kubelet, containerd, kube-proxy, CoreDNS, kube-router
#                     and every pod. Routes only to the ranges below: no
#                     default route, so nothing can leave for a real address.
#   netns ms<I>-inet  "the internet": 203.0.113.10 (RFC 5737), reached from
#                     the node directly and from the VPN host (192.0.2.10)
#   netns ms<I>-vpn   "the VPN provider": 198.51.100.10 towards the node,
#                     192.0.2.1 towards the internet
#   veth ms<I>-h      host 198.18.<I>.1 <-> node 198.18.<I>.2 (/30): the
#                     kubelet reaches the API server, which listens on
#                     198.18.<I>.1, and the API server reaches the kubelet.
#
# The host never forwards (its ip_forward is untouched and nothing routes to
# the pod ranges from it); the node netns forwards between its own links.
# Teardown stops every process, unmounts everything under the state dir and
# deletes the three namespaces (which removes their veths and routes).

NODE_REAL=mediastack-real-node
NODE_TAINT=mediastack.io/real-node
INET_ADDR=203.0.113.10
VPN_ADDR=198.51.100.10
VPN_INET_ADDR=192.0.2.1
# What pods and the node may reach: pods, Services, and the test hosts.
NODE_ROUTES=(10.244.0.0/16 10.96.0.0/16 203.0.113.0/24 198.51.100.0/24 192.0.2.0/24)
node_components=(containerd kubelet kube-proxy coredns kube-router inet vpn)

nodebin() { "$here/build.sh" node; }
in_node() { nsenter --net="/run/netns/ms$node_index-node" -- "$@"; }
netns_gone() { ! ip netns list | grep -qE "^ms$1-(node|inet|vpn)( |$)"; }

# Picks a free index: /run/mediastack-node/<I> is created atomically and
# names the state dir; an index whose state dir is gone is taken over.
node_alloc() {
  local dir=$1 i owner
  mkdir -p /run/mediastack-node
  for i in $(seq 1 250); do
    if mkdir "/run/mediastack-node/$i" 2>/dev/null; then
      echo "$dir" >"/run/mediastack-node/$i/state"
      node_index=$i; echo "$i" >"$dir/node/index"; return 0
    fi
    owner=$(cat "/run/mediastack-node/$i/state" 2>/dev/null || true)
    if [ -n "$owner" ] && [ ! -d "$owner" ]; then
      node_net_down_index "$i"
      rm -rf "/run/mediastack-node/$i"
      if mkdir "/run/mediastack-node/$i" 2>/dev/null; then
        echo "$dir" >"/run/mediastack-node/$i/state"
        node_index=$i; echo "$i" >"$dir/node/index"; return 0
      fi
    fi
  done
  die "no free real-node index in /run/mediastack-node"
}

node_net_down_index() {
  local i=$1 n p
  for n in node inet vpn; do
    # Whatever still runs in our namespaces (e.g. a test's WireGuard server).
    for p in $(ip netns pids "ms$i-$n" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns del "ms$i-$n" 2>/dev/null || true
  done
  ip link del "ms$i-h" 2>/dev/null || true
  rm -f "/var/run/wireguard/ms${i}wg.sock" # a test's WireGuard server (userspace API)
}

# veth A@NS_A ADDR_A B@NS_B ADDR_B
veth() {
  ip link add "$1" netns "$2" type veth peer name "$4" netns "$5"
  ip -n "$2" addr add "$3" dev "$1"; ip -n "$2" link set "$1" up
  ip -n "$5" addr add "$6" dev "$4"; ip -n "$5" link set "$4" up
}

node_net_up() {
  local dir=$1 I n
  command -v nsenter >/dev/null && command -v ip >/dev/null || die "the real node needs iproute2 and util-linux"
  mkdir -p "$dir/node"
  node_alloc "$dir"
  I=$node_index
  node_host=198.18.$I.1 node_ip=198.18.$I.2
  for n in node inet vpn; do ip netns add "ms$I-$n"; ip -n "ms$I-$n" link set lo up; done
  ip link add "ms$I-h" type veth peer name eth-host netns "ms$I-node"
  ip addr add "$node_host/30" dev "ms$I-h"; ip link set "ms$I-h" up
  ip -n "ms$I-node" addr add "$node_ip/30" dev eth-host; ip -n "ms$I-node" link set eth-host up
  veth eth-inet "ms$I-node" 203.0.113.1/24 eth0 "ms$I-inet" "$INET_ADDR/24"
  veth eth-vpn "ms$I-node" 198.51.100.1/24 eth0 "ms$I-vpn" "$VPN_ADDR/24"
  veth eth-inet "ms$I-vpn" "$VPN_INET_ADDR/24" eth-vpn "ms$I-inet" 192.0.2.10/24
  # Return paths of the test hosts: pods are behind the node; the VPN host's
  # tunnel clients (10.64.0.0/16) behind the VPN host.
  ip -n "ms$I-inet" route add 10.244.0.0/16 via 203.0.113.1
  ip -n "ms$I-inet" route add 10.64.0.0/16 via "$VPN_INET_ADDR"
  ip -n "ms$I-vpn" route add 10.244.0.0/16 via 198.51.100.1
  # The VPN host reaches the internet's address through its own link.
  ip -n "ms$I-vpn" route add 203.0.113.0/24 via 192.0.2.10
  in_node sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
  ip netns exec "ms$I-vpn" sysctl -qw net.ipv4.ip_forward=1
  echo "$node_host"
}

# The routing guard: from the node netns, any address outside the test
# ranges is unreachable (checked by `ip route get`, nothing is sent).
node_guard() {
  local a
  for a in 1.1.1.1 8.8.8.8 9.9.9.9 100.64.0.1 172.16.0.1 192.168.1.1 10.0.0.1; do
    if in_node ip route get "$a" >/dev/null 2>&1; then
      die "routing guard: $a is routable from ms$node_index-node ($(in_node ip route get "$a" 2>&1))"
    fi
  done
}

node_configs() {
  local dir=$1 nb=$2 pki=$1/pki api=$3 s=$1/node
  mkdir -p "$s"/{cni/net.d,cni/ipam,containerd,kubelet,logs,manifests} "$s/cni/bin"
  local nbtok=$4 kptok=$5 krtok=$6
  for b in bridge host-local loopback portmap; do ln -sf "$nb/$b" "$s/cni/bin/$b"; done
  kubeconfig_for() { # FILE TOKEN
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "https://$node_host:$api", certificate-authority: "$pki/ca.crt"}
users:
- name: u
  user: {token: "$2"}
contexts:
- name: local
  context: {cluster: local, user: u}
current-context: local
EOF
    chmod 600 "$1"
  }
  kubeconfig_for "$s/kubelet.kubeconfig" "$nbtok"
  kubeconfig_for "$s/kube-proxy.kubeconfig" "$kptok"
  kubeconfig_for "$s/admin.kubeconfig" "$krtok"
  cat >"$s/containerd.toml" <<EOF
version = 3
root = "$s/containerd/root"
state = "$s/containerd/state"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.erofs", "io.containerd.differ.v1.erofs", "io.containerd.mount-handler.v1.erofs"]
imports = []
[grpc]
  address = "$s/containerd.sock"
[ttrpc]
  address = "$s/containerd.sock.ttrpc"
[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = "$s/containerd/opt"
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "mediastack.local/pause:1"
  [plugins.'io.containerd.cri.v1.runtime']
    # The machine forbids lowering oom_score_adj below 0.
    restrict_oom_score_adj = true
    # Pod network namespaces under the state dir, not /run/netns: teardown
    # unmounts and removes them with it.
    netns_mounts_under_state_dir = true
    cdi_spec_dirs = []
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = "$(command -v runc)"
      Root = "$s/runc"
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["$s/cni/bin"]
      conf_dir = "$s/cni/net.d"
EOF
  cat >"$s/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$s/containerd.sock
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
clusterDNS: [10.96.0.10]
clusterDomain: cluster.local
resolvConf: "$s/resolv.conf"
registerWithTaints:
- {key: $NODE_TAINT, value: "true", effect: NoSchedule}
staticPodPath: ""
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {}
evictionSoftGracePeriod: {}
nodeStatusUpdateFrequency: 4s
syncFrequency: 5s
fileCheckFrequency: 5s
volumeStatsAggPeriod: 1m
localStorageCapacityIsolation: false
maxPods: 60
podLogsDir: "$s/pod-logs"
EOF
  : >"$s/resolv.conf" # no upstream resolver: the node has no way out
  cat >"$s/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$s/kube-proxy.kubeconfig"}
hostnameOverride: $NODE_REAL
bindAddress: $node_ip
mode: iptables
clusterCIDR: 10.244.0.0/16
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0}
EOF
  cat >"$s/Corefile" <<EOF
.:53 {
    bind $node_ip
    errors
    health 127.0.0.1:8081
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $s/admin.kubeconfig local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
    loop
}
EOF
}

# The CNI config, once the controller-manager gave the node its pod CIDR.
node_cni() {
  local s=$1/node cidr=$2 routes="" r
  for r in "${NODE_ROUTES[@]}"; do routes+="${routes:+,}{\"dst\":\"$r\"}"; done
  cat >"$s/cni/net.d/10-mediastack.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "mediastack",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "isDefaultGateway": false,
     "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$s/cni/ipam", "ranges": [[{"subnet": "$cidr"}]],
              "routes": [$routes]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
}

# nstart NAME DIR ARGS...: like start, in the node netns.
nstart() { nsstart node "$@"; }
# nsstart NETNS NAME DIR ARGS...
nsstart() {
  local netns=ms$node_index-$1 name=$2 dir=$3
  shift 3
  setsid nsenter --net="/run/netns/$netns" -- "$@" </dev/null >"$dir/logs/$name.log" 2>&1 &
  echo $! >"$dir/pids/$name.pid"
}

node_ready_real() {
  [ "$(kc get node "$NODE_REAL" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

node_up() {
  local dir=$1 api=$2 nbtok=$3 kptok=$4 krtok=$5 nb imgs s=$1/node t cidr
  nb=$(nodebin) || die "build.sh node failed"
  imgs=$("$here/../images/build.sh") || die "images/build.sh failed"
  node_configs "$dir" "$nb" "$api" "$nbtok" "$kptok" "$krtok"
  components+=("${node_components[@]}")
  node_guard

  t=$(now)
  nstart containerd "$dir" "$nb/containerd" --config "$s/containerd.toml"
  wait_for "containerd" "$dir" "$nb/ctr" --address "$s/containerd.sock" version
  local i
  for i in "$imgs"/*.tar; do
    "$nb/ctr" --address "$s/containerd.sock" -n k8s.io images import --local "$i" >>"$s/logs/import.log" 2>&1 ||
      die "ctr images import $i failed (log: $s/logs/import.log)"
  done
  log "containerd + $(ls "$imgs"/*.tar | wc -l) images $(since "$t")s"

  t=$(now)
  nstart kubelet "$dir" "$nb/kubelet" --config="$s/kubelet.yaml" --kubeconfig="$s/kubelet.kubeconfig" \
    --root-dir="$s/kubelet" --cert-dir="$s/kubelet/pki" --hostname-override="$NODE_REAL" \
    --node-ip="$node_ip" --node-labels="type=real,mediastack.io/real-node=true" --v=1
  wait_for "node $NODE_REAL registered" "$dir" kc get node "$NODE_REAL"
  wait_for "pod CIDR of $NODE_REAL" "$dir" test -n "$(kc get node "$NODE_REAL" -o jsonpath='{.spec.podCIDR}' 2>/dev/null)"
  cidr=$(kc get node "$NODE_REAL" -o jsonpath='{.spec.podCIDR}')
  node_cni "$dir" "$cidr"
  nstart kube-proxy "$dir" "$nb/kube-proxy" --config="$s/kube-proxy.yaml"
  nstart kube-router "$dir" "$nb/kube-router" --kubeconfig="$s/admin.kubeconfig" \
    --run-firewall=true --run-router=false --run-service-proxy=false --bgp-graceful-restart=false \
    --hostname-override="$NODE_REAL" --health-port=0 --metrics-port=0 --enable-ipv6=false
  nstart coredns "$dir" "$nb/coredns" -conf "$s/Corefile"
  # The test hosts' recording services (testhost.py); their logs are what
  # the data-plane tests read: $dir/node/inet.log and $dir/node/vpn.log.
  nsstart inet inet "$dir" python3 "$here/testhost.py" "$s/inet.log" \
    "tcp:$INET_ADDR:80" "tcp:$INET_ADDR:6969" "udp:$INET_ADDR:9" "tcp:192.0.2.10:80"
  # UDP 51820 stays free for a test's WireGuard server.
  nsstart vpn vpn "$dir" python3 "$here/testhost.py" "$s/vpn.log" "udp:$VPN_ADDR:51821" "tcp:$VPN_ADDR:80"
  # kube-dns: a selector-less Service in front of the node's CoreDNS.
  kc apply --server-side -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: mediastack-cluster-sh}
addressType: IPv4
ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]
endpoints: [{addresses: ["$node_ip"], conditions: {ready: true}}]
EOF
  wait_for "node $NODE_REAL Ready" "$dir" node_ready_real
  wait_for "CoreDNS ready" "$dir" in_node curl -fsS http://127.0.0.1:8181/ready
  log "real node $NODE_REAL ready $(since "$t")s (index $node_index, pods $cidr, $(node_mem "$dir"))"
}

# Resident memory of the node: its daemons, the shims and every container
# process below them (MiB, from /proc).
node_mem() {
  local dir=$1 pids p kib=0
  pids=$(for p in /proc/[0-9]*; do
    tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$dir/node/" && echo "${p#/proc/}"
  done | tr '\n' ' ')
  # Add descendants (container processes of the shims).
  local all=" $pids " more=1 pp
  while [ $more = 1 ]; do
    more=0
    for p in /proc/[0-9]*; do
      p=${p#/proc/}
      case $all in *" $p "*) continue ;; esac
      pp=$(proc "$p" 2>/dev/null | cut -d' ' -f2) || continue
      case $all in *" $pp "*) all+="$p "; more=1 ;; esac
    done
  done
  for p in $all; do
    # Kernel threads and exiting processes have no VmRSS line: count them as 0.
    kib=$((kib + $(awk '/^VmRSS/ {r = $2} END {print r + 0}' "/proc/$p/status" 2>/dev/null || echo 0)))
  done
  echo "node RSS $((kib / 1024)) MiB in $(wc -w <<<"$all") processes"
}

# Stops the node's processes and containers and unmounts what they mounted.
node_down() {
  local dir=$1 nb s=$1/node sock mnt
  [ -f "$s/index" ] || return 0
  if [ -f "$dir/pids/kubelet.pid" ]; then log "real node at teardown: $(node_mem "$dir")"; fi
  stop "$dir" inet vpn kube-router coredns kube-proxy kubelet
  sock=$s/containerd.sock
  nb=$(ls -d "$cache"/node/*/bin 2>/dev/null | head -1)
  if [ -S "$sock" ] && [ -x "$nb/ctr" ]; then
    # Kill every container, then let containerd remove them.
    local c
    for c in $("$nb/ctr" --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
      "$nb/ctr" --address "$sock" -n k8s.io tasks kill -s KILL "$c" >/dev/null 2>&1 || true
    done
    sleep 0.5
    for c in $("$nb/ctr" --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
      "$nb/ctr" --address "$sock" -n k8s.io tasks delete -f "$c" >/dev/null 2>&1 || true
    done
  fi
  stop "$dir" containerd
  # Shims left behind (their command line names the state dir).
  local p
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    if ours "$p" "$dir/node"; then kill -KILL "$p" 2>/dev/null || true; fi
  done
  # Mounts of the kubelet and containerd under the state dir, deepest first.
  for mnt in $(awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount -l "$mnt" 2>/dev/null || true
  done
}

# After the control plane stopped (the API server listens on the veth):
# the namespaces, which takes their veths and routes with them, and the index.
node_release() {
  local dir=$1 I
  [ -f "$dir/node/index" ] || return 0
  I=$(cat "$dir/node/index")
  node_net_down_index "$I"
  rm -rf "/run/mediastack-node/$I"
  netns_gone "$I" || log "WARNING: namespaces of index $I still listed"
}
