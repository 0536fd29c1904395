#!/usr/bin/env bash
# A real local Kubernetes control plane without containers: etcd,
# kube-apiserver, kube-controller-manager and kube-scheduler from build.sh,
# plus kwok, which plays the kubelet for a few fake nodes so pods go Running/Ready.
# With --real-node (or MEDIASTACK_REAL_NODE=1) a second, real node joins:
# kubelet + containerd + runc in a network namespace of its own, kube-proxy,
# CoreDNS, kube-router's NetworkPolicy firewall and two test hosts (node.sh).
# It is tainted mediastack.io/real-node: only pods that tolerate it run there.
#
#   cluster.sh up     [--real-node] [STATE_DIR]   start, wait until usable, install CRDs
#   cluster.sh down   [STATE_DIR]   stop every recorded process, remove the dir
#   cluster.sh status [STATE_DIR]   exit 0 if up
#   cluster.sh restart-apiserver [STATE_DIR]   kill -9 kube-apiserver, start it again
#                                   with the same flags (etcd and clients keep running)
#   cluster.sh exec [--real-node] [--] CMD...     up in a fresh dir, run CMD, always down;
#                                   exits with CMD's status
#
# STATE_DIR defaults to ${MEDIASTACK_CACHE:-~/.cache/mediastack-operator}/clusters/local.
# Env: MEDIASTACK_SHARED (default <repo>/../shared), MEDIASTACK_SKIP_THIRDPARTY_CRDS=1,
#      MEDIASTACK_UP_TIMEOUT (seconds per wait, default 90).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${MEDIASTACK_CACHE:-$HOME/.cache/mediastack-operator}
timeout=${MEDIASTACK_UP_TIMEOUT:-90}
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
real_node=${MEDIASTACK_REAL_NODE:-0}
# shellcheck source=node.sh
source "$here/node.sh"
NODE=kwok-node-0
# Simulated nodes kwok-node-0..N-1 (MEDIASTACK_KWOK_NODES, default 8), each
# with room for MEDIASTACK_KWOK_NODE_PODS pods (default 110, the kubelet's).
KWOK_NODES=${MEDIASTACK_KWOK_NODES:-8}
KWOK_NODE_PODS=${MEDIASTACK_KWOK_NODE_PODS:-110}
NODE_IP=10.0.0.1 # fake; not loopback, which Endpoints validation rejects for hostNetwork pods

log() { echo "cluster: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s%N; }
since() { local d=$(( $(now) - $1 )); printf '%d.%01d' $((d / 1000000000)) $((d / 100000000 % 10)); }

# N distinct free loopback ports: hold all sockets open until every port is chosen.
free_ports() {
  python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

# proc PID: print "STATE PPID" (fields after the last ')': comm may hold spaces).
proc() {
  local s st pp
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  read -r st pp _ <<<"${s##*) }"
  echo "$st $pp"
}
alive() { local st; st=$(proc "$1") && [ "${st%% *}" != Z ]; }

# A process is ours if it is alive (zombies count as gone) and its command line
# mentions the state dir, so a recycled PID is never killed.
ours() {
  alive "$1" && tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -qF -- "$2/"
}

# reap PID: collect a dead child of ours so it does not linger as a zombie.
# Only for a PID still listed as our child: bash 5.2 `wait` on a child it has
# already reaped can block forever inside a trap.
reap() { if [ "$(proc "$1" | cut -d' ' -f2)" = $$ ]; then wait "$1" 2>/dev/null || true; fi; }

# Storage: KWOK simulates no volume plugin and there is no provisioner, so a
# default StorageClass without a provisioner and a pool of pre-made volumes
# stand in for one. The real PV controller (kube-controller-manager) binds
# claims to them; a bound volume is not reused (Retain).
PV_COUNT=${MEDIASTACK_PV_COUNT:-300}
storage() {
  local i
  {
    cat <<'EOF'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
reclaimPolicy: Retain
EOF
    for i in $(seq "$PV_COUNT"); do
      printf -- '---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {name: pool-%d}\nspec:\n  capacity: {storage: 4Ti}\n  accessModes: [ReadWriteOnce, ReadWriteMany, ReadOnlyMany]\n  storageClassName: standard\n  persistentVolumeReclaimPolicy: Retain\n  hostPath: {path: /var/lib/mediastack-pool/%d}\n' "$i" "$i"
    done
  } | kc apply --server-side -f - >/dev/null
}

dump_logs() {
  local f
  for f in "$1"/logs/*.log; do
    [ -f "$f" ] || continue
    echo "----- tail $f" >&2
    tail -n 25 "$f" >&2
  done
}

# wait_for DESC STATE CMD...: poll CMD until it succeeds; bounded by $timeout.
wait_for() {
  local desc=$1 dir=$2 deadline=$((SECONDS + timeout)) name
  shift 2
  until "$@" >/dev/null 2>&1; do
    for name in "${components[@]}"; do # fail fast if a component died
      if [ -f "$dir/pids/$name.pid" ] && ! ours "$(cat "$dir/pids/$name.pid")" "$dir"; then
        dump_logs "$dir"; die "$name exited while waiting for $desc (log: $dir/logs/$name.log)"
      fi
    done
    if [ $SECONDS -ge "$deadline" ]; then
      dump_logs "$dir"; die "timed out after ${timeout}s waiting for $desc"
    fi
    sleep 0.2
  done
}

# start NAME STATE ARGS...: own session (setsid) so a Ctrl-C to the caller's
# process group reaches `down`, not the control plane, and `down` can kill the group.
start() {
  local name=$1 dir=$2
  shift 2
  setsid "$bin/$name" "$@" </dev/null >"$dir/logs/$name.log" 2>&1 &
  echo $! >"$dir/pids/$name.pid"
}

kwok_stages() {
  # The kwok binary has no built-in stages (kwokctl injects them into its
  # config), so assemble kwokctl's defaults from the kwok module source:
  # fast node init + lease heartbeat, fast pod ready/complete/delete.
  local out="$bin/../kwok-stages.yaml" src f
  [ -s "$out" ] && { echo "$out"; return; }
  # shellcheck source=versions.env
  source "$here/versions.env"
  src="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION"
  [ -d "$src" ] || src=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  for f in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
    pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    echo "---"
    cat "$src/kustomize/stage/$f.yaml"
    echo
  done >"$out.$$"
  mv "$out.$$" "$out" # atomic: concurrent runs may race here
  echo "$out"
}

gen_pki() {
  local p=$1/pki
  mkdir -p "$p"
  (
    cd "$p"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj /CN=mediastack-local-ca
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes.default.svc,DNS:kubernetes.default,DNS:kubernetes${2:+,IP:$2}" \
      "extendedKeyUsage=serverAuth" "keyUsage=critical,digitalSignature,keyEncipherment" >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile apiserver.ext -out apiserver.crt
    # The API server's client certificate towards kubelets.
    openssl req -newkey rsa:2048 -nodes -keyout kubelet-client.key -out kubelet-client.csr -subj "/O=system:masters/CN=kube-apiserver-kubelet-client"
    printf '%s\n' "extendedKeyUsage=clientAuth" "keyUsage=critical,digitalSignature,keyEncipherment" >kubelet-client.ext
    openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile kubelet-client.ext -out kubelet-client.crt
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
  ) >/dev/null 2>&1 || die "openssl failed in $p"
  # Static token auth is still supported in 1.37; the token maps to system:masters.
  local token
  token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  echo "$token,mediastack-admin,mediastack-admin,\"system:masters\"" >"$p/tokens.csv"
  # The real node's kubelet and kube-proxy (unused without --real-node).
  local t
  for t in kubelet kube-proxy; do od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$p/$t.token"; done
  echo "$(cat "$p/kubelet.token"),system:node:$NODE_REAL,system:node:$NODE_REAL,\"system:nodes\"" >>"$p/tokens.csv"
  echo "$(cat "$p/kube-proxy.token"),system:kube-proxy,system:kube-proxy" >>"$p/tokens.csv"
  chmod 600 "$p"/*.key "$p/tokens.csv"
  # Audit every API request (reads too; not lease heartbeats, not non-resource
  # URLs such as /readyz) so tests can count exactly which client wrote what in
  # their namespace and the benchmark can count the operator's reads.
  cat >"$p/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  resources: [{group: coordination.k8s.io, resources: [leases]}]
- level: None
  nonResourceURLs: ["*"]
- level: Metadata
EOF
  echo "$token"
}

write_kubeconfig() {
  local dir=$1 port=$2 token=$3 host=${4:-127.0.0.1}
  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: mediastack-local
  cluster:
    server: https://$host:$port
    certificate-authority-data: $(base64 -w0 <"$dir/pki/ca.crt")
users:
- name: admin
  user:
    token: $token
contexts:
- name: mediastack-local
  context: {cluster: mediastack-local, user: admin, namespace: default}
current-context: mediastack-local
EOF
  chmod 600 "$dir/kubeconfig"
}

kc() { "$bin/kubectl" --kubeconfig "$state/kubeconfig" "$@"; }

node_ready() {
  [ "$(kc get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}|{.spec.taints}')" = "True|" ]
}

cmd_up() {
  state=$1
  local t0 t token
  t0=$(now)
  bin=$("$here/build.sh") || die "build.sh failed"
  log "build check $(since "$t0")s ($bin)"
  # Resolve CRD files first: fail before starting anything.
  local shared=${MEDIASTACK_SHARED:-$repo/../shared} crds=() f
  if [ "${MEDIASTACK_SKIP_THIRDPARTY_CRDS:-0}" != 1 ]; then
    for f in traefik-crds.yaml monitoring-crds.yaml; do
      [ -f "$shared/thirdparty/crds/$f" ] || die "missing $shared/thirdparty/crds/$f (set MEDIASTACK_SHARED or MEDIASTACK_SKIP_THIRDPARTY_CRDS=1)"
      crds+=(-f "$shared/thirdparty/crds/$f")
    done
  fi
  for f in "$repo"/crds/*.yaml; do if [ -f "$f" ]; then crds+=(-f "$f"); fi; done
  if cmd_status "$state" >/dev/null 2>&1; then die "already up in $state (run: $0 down $state)"; fi
  if [ -n "$(ls -A "$state" 2>/dev/null)" ]; then cmd_down "$state"; fi # leftovers of a crashed run
  mkdir -p "$state"/{logs,pids}
  touch "$state/.mediastack-cluster"
  state=$(cd "$state" && pwd)

  # Until up succeeds, any failure (or signal) tears down what was started.
  local own=0
  if [ -z "$teardown" ]; then teardown=$state own=1; fi

  t=$(now)
  # With the real node, the API server listens on the host end of the node's
  # veth (and every client uses that address), so the kubelet reaches it.
  local api_host=127.0.0.1
  if [ "$real_node" = 1 ]; then api_host=$(node_net_up "$state") || die "real-node network failed"; node_index=$(cat "$state/node/index"); fi
  token=$(gen_pki "$state" "$([ "$real_node" = 1 ] && echo "$api_host")")
  local stages p_etcd p_peer p_api p_kcm p_sched p_kwok
  stages=$(kwok_stages)
  read -r p_etcd p_peer p_api p_kcm p_sched p_kwok <<<"$(free_ports 6)"
  write_kubeconfig "$state" "$p_api" "$token" "$api_host"
  log "pki+config $(since "$t")s"

  t=$(now)
  start etcd "$state" --name=node0 --data-dir="$state/etcd" \
    --listen-client-urls="http://127.0.0.1:$p_etcd" --advertise-client-urls="http://127.0.0.1:$p_etcd" \
    --listen-peer-urls="http://127.0.0.1:$p_peer" --initial-advertise-peer-urls="http://127.0.0.1:$p_peer" \
    --initial-cluster="node0=http://127.0.0.1:$p_peer" --unsafe-no-fsync=true --log-level=warn
  wait_for "etcd /health" "$state" curl -fsS "http://127.0.0.1:$p_etcd/health"
  log "etcd ready $(since "$t")s (port $p_etcd)"

  t=$(now)
  local pki=$state/pki
  apiserver_args=(--etcd-servers="http://127.0.0.1:$p_etcd" \
    --bind-address="$api_host" --advertise-address="$api_host" --secure-port="$p_api" --cert-dir="$pki" \
    --kubelet-client-certificate="$pki/kubelet-client.crt" --kubelet-client-key="$pki/kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" --token-auth-file="$pki/tokens.csv" \
    --authorization-mode=Node,RBAC --allow-privileged=true \
    --service-cluster-ip-range=10.96.0.0/16 --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --endpoint-reconciler-type=none \
    --audit-policy-file="$pki/audit-policy.yaml" --audit-log-path="$state/logs/audit.log" --audit-log-format=json)
  # Kept for restart-apiserver (the same flags again).
  printf '%s\0' "${apiserver_args[@]}" >"$state/kube-apiserver.args"
  start kube-apiserver "$state" "${apiserver_args[@]}"
  wait_for "kube-apiserver /readyz" "$state" kc get --raw /readyz
  log "kube-apiserver ready $(since "$t")s (port $p_api)"

  t=$(now)
  local kcfg=$state/kubeconfig
  start kube-controller-manager "$state" --kubeconfig="$kcfg" --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port="$p_kcm" \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
    --allocate-node-cidrs=true --cluster-cidr=10.244.0.0/16 --service-cluster-ip-range=10.96.0.0/16 \
    --kube-api-qps=100 --kube-api-burst=200
  start kube-scheduler "$state" --kubeconfig="$kcfg" --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port="$p_sched"
  # KWOK_WORKDIR keeps a stray ~/.kwok/kwok.yaml from being merged into our config.
  KWOK_WORKDIR="$state/kwok" start kwok "$state" --kubeconfig="$kcfg" --config="$stages" \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-ip="$NODE_IP" --node-port="$p_kwok" --server-address="127.0.0.1:$p_kwok" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --cidr=10.244.0.0/16 --node-lease-duration-seconds=40
  # Several simulated nodes: every test stack runs a managed Traefik with
  # hostPort 80, and one node admits only one of them at a time (the
  # scheduler's NodePorts filter), so parallel tests, and namespaces still
  # being deleted, would queue behind each other's Traefik.
  for n in $(seq 0 $((KWOK_NODES - 1))); do
    kc create -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$n
  labels: {type: kwok, kubernetes.io/hostname: kwok-node-$n, kubernetes.io/os: linux, kubernetes.io/arch: amd64}
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
status:
  capacity: {cpu: "32", memory: 64Gi, pods: "$KWOK_NODE_PODS"}
  allocatable: {cpu: "32", memory: 64Gi, pods: "$KWOK_NODE_PODS"}
  nodeInfo: {architecture: amd64, operatingSystem: linux}
EOF
  done
  wait_for "default ServiceAccount" "$state" kc get serviceaccount default -n default
  wait_for "node $NODE Ready and untainted" "$state" node_ready
  log "controllers + node ready $(since "$t")s"

  t=$(now)
  storage
  log "storage class + $PV_COUNT volumes $(since "$t")s"

  t=$(now)
  if [ ${#crds[@]} -gt 0 ]; then
    kc apply --server-side --force-conflicts "${crds[@]}" >/dev/null
    # Retried: `kubectl wait` errors out on a CRD that has no conditions yet.
    wait_for "CRDs Established" "$state" kc wait --for=condition=Established crd --all --timeout=60s
  fi
  log "$((${#crds[@]} / 2)) CRD file(s) established $(since "$t")s"

  if [ "$real_node" = 1 ]; then
    node_host=$api_host node_ip=${api_host%.1}.2
    node_up "$state" "$p_api" "$(cat "$pki/kubelet.token")" "$(cat "$pki/kube-proxy.token")" "$token"
  fi

  # shellcheck disable=SC2016 # $PATH is expanded when env is sourced
  printf 'export KUBECONFIG=%q\nexport PATH=%q:"$PATH"\nexport MEDIASTACK_AUDIT_LOG=%q MEDIASTACK_CLUSTER_STATE=%q\n' "$state/kubeconfig" "$bin" "$state/logs/audit.log" "$state" >"$state/env"
  if [ "$real_node" = 1 ]; then
    printf 'export MEDIASTACK_REAL_NODE=1 MEDIASTACK_REAL_NODE_INDEX=%q MEDIASTACK_REAL_NODE_STATE=%q MEDIASTACK_REAL_NODE_BIN=%q\n' \
      "$node_index" "$state/node" "$("$here/build.sh" node)" >>"$state/env"
  fi
  if [ $own = 1 ]; then teardown=""; fi
  log "up in $(since "$t0")s"
  echo "export KUBECONFIG=$state/kubeconfig   # or: source $state/env"
}

# stop DIR NAME...: TERM the named components' process groups (each leads its
# own, via setsid), wait up to 10s, then KILL; fail if any survives.
stop() {
  local dir=$1 name pid pids=() alive
  shift
  for name in "$@"; do
    pid=$(cat "$dir/pids/$name.pid" 2>/dev/null) || continue
    if ours "$pid" "$dir"; then pids+=("$pid"); fi
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    alive=0
    for pid in "${pids[@]}"; do if ours "$pid" "$dir"; then alive=1; fi; done
    if [ $alive = 0 ]; then break; fi
    sleep 0.2
  done
  for pid in "${pids[@]}"; do
    if ours "$pid" "$dir"; then
      log "$pid ($(basename "$(tr "\0" "\n" 2>/dev/null <"/proc/$pid/cmdline" | head -1)")) ignored SIGTERM for 10s, sending SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 25); do if ours "$pid" "$dir"; then sleep 0.2; else break; fi; done
    reap "$pid"
    if ours "$pid" "$dir"; then die "process $pid survived SIGKILL ($dir)"; fi
  done
  stopped=$((stopped + ${#pids[@]}))
}

cmd_down() {
  local dir=$1 stopped=0
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd)
  # Refuse to rm -rf a directory this script did not create.
  if [ -n "$(ls -A "$dir")" ] && [ ! -f "$dir/.mediastack-cluster" ]; then die "$dir is not a cluster state dir"; fi
  # The real node first (it needs nothing to stop), then clients, etcd last:
  # an apiserver that loses etcd mid-shutdown hangs.
  node_down "$dir"
  stop "$dir" kwok kube-scheduler kube-controller-manager
  stop "$dir" kube-apiserver
  stop "$dir" etcd
  node_release "$dir"
  rm -rf "$dir"
  log "down: stopped $stopped process(es), removed $dir"
}

cmd_status() {
  local dir=$1 name pid server ok=0
  [ -d "$dir" ] || { echo "down (no $dir)"; return 1; }
  dir=$(cd "$dir" && pwd)
  for name in "${components[@]}"; do
    pid=$(cat "$dir/pids/$name.pid" 2>/dev/null || echo none)
    if [ "$pid" != none ] && ours "$pid" "$dir"; then echo "$name: running (pid $pid)"; else echo "$name: not running"; ok=1; fi
  done
  # /readyz is readable anonymously (system:public-info-viewer); no kubectl/build needed.
  server=$(sed -n 's/^ *server: //p' "$dir/kubeconfig" 2>/dev/null)
  if [ $ok = 0 ] && curl -fsS --cacert "$dir/pki/ca.crt" "$server/readyz" >/dev/null 2>&1; then
    echo "up: export KUBECONFIG=$dir/kubeconfig"
  else
    echo "down"; return 1
  fi
}

# restart-apiserver STATE: kill -9 the API server (as a crash would; etcd and
# every client keep running) and start it again with the same flags.
cmd_restart_apiserver() {
  state=$(cd "$1" && pwd)
  local pid args=() t
  [ -f "$state/kube-apiserver.args" ] || die "$state has no kube-apiserver.args (started by an older cluster.sh?)"
  bin=$("$here/build.sh") || die "build.sh failed"
  pid=$(cat "$state/pids/kube-apiserver.pid")
  if ours "$pid" "$state"; then kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"; fi
  for _ in $(seq 50); do if ours "$pid" "$state"; then sleep 0.1; else break; fi; done
  if ours "$pid" "$state"; then die "kube-apiserver $pid survived SIGKILL"; fi
  mapfile -d '' args <"$state/kube-apiserver.args"
  # The port is free once the kernel has closed the dead server's sockets.
  local host port a
  for a in "${args[@]}"; do
    case $a in --bind-address=*) host=${a#*=} ;; --secure-port=*) port=${a#*=} ;; esac
  done
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then sleep 0.1; else break; fi
  done
  t=$(now)
  mv "$state/logs/kube-apiserver.log" "$state/logs/kube-apiserver.log.$(date +%s)"
  start kube-apiserver "$state" "${args[@]}"
  wait_for "kube-apiserver /readyz after restart" "$state" kc get --raw /readyz
  log "kube-apiserver restarted $(since "$t")s"
}

stop_child() {
  kill -TERM "$child" 2>/dev/null || true
  for _ in $(seq 50); do if alive "$child"; then sleep 0.2; else break; fi; done
  kill -KILL "$child" 2>/dev/null || true
  reap "$child"
}

cmd_exec() {
  if [ "${1:-}" = --real-node ]; then real_node=1; shift; fi
  [ "${1:-}" = -- ] && shift
  [ $# -gt 0 ] || die "usage: $0 exec [--] CMD..."
  mkdir -p "$cache/clusters"
  local child rc=0
  teardown=$(mktemp -d "$cache/clusters/exec.XXXXXX") # EXIT trap downs it whatever happens
  cmd_up "$teardown" >/dev/null
  export KUBECONFIG=$teardown/kubeconfig PATH=$bin:$PATH MEDIASTACK_AUDIT_LOG=$teardown/logs/audit.log \
    MEDIASTACK_CLUSTER_STATE=$teardown
  if [ "$real_node" = 1 ]; then
    export MEDIASTACK_REAL_NODE=1 MEDIASTACK_REAL_NODE_INDEX=$node_index MEDIASTACK_REAL_NODE_STATE=$teardown/node \
      MEDIASTACK_REAL_NODE_BIN=$("$here/build.sh" node)
  fi
  # CMD runs in the background so INT/TERM interrupt `wait` at once; forward
  # them as TERM (background jobs of a script ignore SIGINT).
  "$@" <&0 &
  child=$!
  trap 'stop_child; exit 130' INT
  trap 'stop_child; exit 143' TERM
  wait $child || rc=$?
  exit $rc
}

teardown="" # state dir to tear down on exit
trap 'rc=$?; if [ -n "$teardown" ]; then cmd_down "$teardown" || rc=1; fi; exit $rc' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  up)
    if [ "${1:-}" = --real-node ]; then real_node=1; shift; fi
    cmd_up "${1:-$cache/clusters/local}" ;;
  down) cmd_down "${1:-$cache/clusters/local}" ;;
  status) cmd_status "${1:-$cache/clusters/local}" ;;
  restart-apiserver) cmd_restart_apiserver "${1:-$cache/clusters/local}" ;;
  exec) cmd_exec "$@" ;;
  *) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0" ; exit 2 ;;
esac
