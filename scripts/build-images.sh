#!/usr/bin/env bash
# Builds the root Dockerfile's images (gateway, issuer, expenses-mcp) on a machine that reaches
# no container registry, then starts the issuer and gateway images and checks their /healthz.
#
#   ./scripts/build-images.sh            # as root; Debian 12 (bookworm) host
#
# What it does, all under .tools/images/ (git-ignored; nothing is written to the system's
# container storage):
#   1. installs podman, runc, debootstrap and curl with apt when they are missing;
#   2. makes the base images once (kept until removed): a bookworm rootfs by debootstrap, from
#      which come a build image (that rootfs plus gcc, make, cmake and the host's Rust toolchain,
#      standing in for rust:1.95-bookworm) and a runtime image (only glibc, libgcc, libstdc++,
#      libssl, CA certificates, tzdata and the nonroot user 65532, standing in for
#      gcr.io/distroless/cc-debian12:nonroot);
#   3. builds the three targets with `podman build`, passing those two as the Dockerfile's
#      BUILD_IMAGE and RUNTIME_IMAGE build arguments (the Dockerfile itself is unchanged; with
#      no build arguments it builds from the published images, as before);
#   4. runs the issuer image and the gateway image (host network, loopback addresses only),
#      curls the issuer's /healthz, the gateway's admin /healthz and /readyz, and prints the
#      images' sizes. Exits non-zero on any failure; every wait has a timeout.
#
# How long: the base images take about 2 minutes the first time (debootstrap, copying the
# toolchain). The first build of the three targets compiles the workspace in release mode: 20 to
# 25 minutes on 2 cores. Later runs reuse the cargo registry and target cache mounts and the
# image layers: about 10 seconds when nothing changed. Run it under `nice` on a shared machine.
#
# Cargo inside the build reaches the crate registry the way the host does: directly (host
# network), trusting the host's extra CA certificates (/usr/local/share/ca-certificates), which
# are installed in the build image. debootstrap uses the host's own Debian mirror (its apt
# sources). The host's toolchain is copied in because a container cannot download one.
#
# Settings this sandbox needs (a Firecracker VM with cgroup v1 plus a cgroup2 mount, no
# CAP_SYS_RESOURCE), written into .tools/images/conf/containers.conf:
#   runtime runc        crun 1.8 refuses the "hybrid" cgroup layout;
#   default_ulimits     nofile and nproc no higher than this shell's hard limits (podman's
#                       defaults, 1048576 and 4194304, cannot be raised to here);
#   cgroup_manager cgroupfs, events_logger file   (no systemd);
#   --network host      for builds and runs (no bridge or port forwarding needed).
#
# Environment (all optional):
#   IMAGES_DIR      where everything goes (default: <repo>/.tools/images)
#   IMAGE_TAG       the tag of the three images (default: local)
#   DEBIAN_MIRROR   debootstrap's mirror (default: the host's, from /etc/apt sources)
#   STORAGE_DRIVER  containers/storage driver (default: overlay; vfs also works, slower)
#   CARGO_JOBS      cargo's -j inside the build (default: 2)
#   BUILD_TIMEOUT   seconds allowed for each target's build (default: 5400)
#   ISSUER_PORT, GATEWAY_PORT, GATEWAY_ADMIN_PORT   loopback ports for the smoke run
#                   (defaults: 19400, 18480, 19490)
#   BASES_ONLY=1    stop once the two base images exist
#   KEEP_RUNNING=1  leave the two smoke containers running (removed by the next run)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${IMAGES_DIR:-$ROOT/.tools/images}
TAG=${IMAGE_TAG:-local}
SUITE=bookworm
DRIVER=${STORAGE_DRIVER:-overlay}
JOBS=${CARGO_JOBS:-2}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-5400}
ISSUER_PORT=${ISSUER_PORT:-19400}
GATEWAY_PORT=${GATEWAY_PORT:-18480}
GATEWAY_ADMIN_PORT=${GATEWAY_ADMIN_PORT:-19490}

RUNTIME_BASE=localhost/portcullis-runtime-base:$SUITE
ISSUER_CTR=portcullis-smoke-issuer
GATEWAY_CTR=portcullis-smoke-gateway

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build-images: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (debootstrap and rootful podman)"
[[ -r /etc/debian_version ]] || die "needs a Debian host (apt, debootstrap)"

# The host's mirror for $SUITE: the first URI of a deb822 stanza (sources.list.d/*.sources)
# or a one-line `deb` entry (sources.list, *.list) whose suite is exactly $SUITE.
host_mirror() {
    local f m
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r $f ]] || continue
        m=$(awk -v suite="$SUITE" 'BEGIN { RS = "" } {
                uri = ""; ok = 0; n = split($0, line, "\n")
                for (i = 1; i <= n; i++) {
                    if (line[i] ~ /^URIs:/) { split(line[i], w, /[ \t]+/); uri = w[2] }
                    if (line[i] ~ /^Suites:/) {
                        m = split(line[i], w, /[ \t]+/)
                        for (j = 2; j <= m; j++) if (w[j] == suite) ok = 1
                    }
                }
                if (ok && uri != "") { print uri; exit }
            }' "$f")
        if [[ -n $m ]]; then
            printf '%s\n' "$m"
            return 0
        fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r $f ]] || continue
        m=$(awk -v suite="$SUITE" '$1 == "deb" {
                i = 2
                if ($2 ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }' "$f")
        if [[ -n $m ]]; then
            printf '%s\n' "$m"
            return 0
        fi
    done
    return 1
}
MIRROR=${DEBIAN_MIRROR:-$(host_mirror)} || die "no $SUITE mirror in /etc/apt's sources; set DEBIAN_MIRROR"

# ---- tools ------------------------------------------------------------------------------------
missing=()
for tool in podman:podman runc:runc debootstrap:debootstrap curl:curl; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    timeout 300 apt-get update -q
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q "${missing[@]}"
fi

# The host's toolchain, copied into the build image. Its version is the image's Rust version.
cargo_bin=$(rustup which cargo 2>/dev/null || command -v cargo) || die "no cargo on the host"
TOOLCHAIN=$(cd "$(dirname "$cargo_bin")/.." && pwd -P)
[[ -x $TOOLCHAIN/bin/rustc ]] || die "no rustc beside $cargo_bin"
RUST_VERSION=$("$TOOLCHAIN/bin/rustc" -V | awk '{print $2}')
BUILD_BASE=localhost/portcullis-build-base:$SUITE-rust$RUST_VERSION

# ---- podman's configuration -------------------------------------------------------------------
mkdir -p "$WORK"/{conf,storage,run,tmp,smoke}
nofile=$(ulimit -Hn)
[[ $nofile == unlimited ]] && nofile=1048576
# nproc: podman lowers its own to pid_max before starting the runtime.
nproc=$(ulimit -Hu)
pid_max=$(cat /proc/sys/kernel/pid_max)
if [[ $nproc == unlimited ]] || ((nproc > pid_max)); then nproc=$pid_max; fi
cat >"$WORK/conf/containers.conf" <<EOF
# Written by scripts/build-images.sh.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
netns = "host"
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$WORK/run/events.log"
image_copy_tmp_dir = "$WORK/tmp"
EOF
cat >"$WORK/conf/storage.conf" <<EOF
# Written by scripts/build-images.sh.
[storage]
driver = "$DRIVER"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
EOF
cat >"$WORK/conf/registries.conf" <<EOF
# Written by scripts/build-images.sh: no registry is searched; every image here is localhost/.
unqualified-search-registries = []
short-name-mode = "enforcing"
EOF
export CONTAINERS_CONF=$WORK/conf/containers.conf
export CONTAINERS_STORAGE_CONF=$WORK/conf/storage.conf
export CONTAINERS_REGISTRIES_CONF=$WORK/conf/registries.conf
# Where buildah keeps RUN --mount=type=cache directories (TMPDIR/buildah-cache-0).
export TMPDIR=$WORK/tmp

# ---- base rootfs ------------------------------------------------------------------------------
ROOTFS=$WORK/rootfs-$SUITE
if [[ ! -e $ROOTFS/.complete ]]; then
    log "debootstrap $SUITE into $ROOTFS"
    rm -rf "$ROOTFS" "$ROOTFS.partial"
    # Build tools (what the rust image has and the workspace's build scripts use) and the
    # runtime image's packages in one rootfs; the runtime image takes only its packages' files.
    timeout 1800 debootstrap --variant=minbase \
        --include=ca-certificates,gcc,g++,libc6-dev,make,cmake,pkg-config,git,libssl3,tzdata,netbase \
        "$SUITE" "$ROOTFS.partial" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
        die "debootstrap failed; see $WORK/debootstrap.log"
    rm -rf "$ROOTFS.partial"/var/cache/apt/archives/*.deb "$ROOTFS.partial"/var/lib/apt/lists/*
    touch "$ROOTFS.partial/.complete"
    mv "$ROOTFS.partial" "$ROOTFS"
fi

# ---- build image ------------------------------------------------------------------------------
if ! podman image exists "$BUILD_BASE"; then
    log "making $BUILD_BASE (the $SUITE rootfs and the host's Rust $RUST_VERSION)"
    ctx=$WORK/build-base-context
    rm -rf "$ctx"
    mkdir -p "$ctx/toolchain" "$ctx/ca"
    # The toolchain without its documentation (share/doc is half of it).
    tar -C "$TOOLCHAIN" --exclude=./share/doc -cf - . | tar -C "$ctx/toolchain" -xf -
    # The host's own CAs (a TLS-inspecting egress proxy's, for one), so that cargo and apt in
    # the build reach the crate registry and the mirror as the host does.
    shopt -s nullglob
    for ca in /usr/local/share/ca-certificates/*.crt; do cp "$ca" "$ctx/ca/"; done
    shopt -u nullglob
    touch "$ctx/ca/.keep"
    tc_dir=/usr/local/rustup/toolchains/$RUST_VERSION-x86_64-unknown-linux-gnu
    cat >"$ctx/Containerfile" <<EOF
FROM localhost/portcullis-rootfs:$SUITE
COPY toolchain $tc_dir
COPY ca/ /usr/local/share/ca-certificates/
RUN rm -f /usr/local/share/ca-certificates/.keep && update-ca-certificates >/dev/null \\
 && mkdir -p /usr/local/cargo/bin
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo RUST_VERSION=$RUST_VERSION \\
    CARGO_BUILD_JOBS=$JOBS \\
    PATH=/usr/local/cargo/bin:$tc_dir/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN cargo -V && rustc -V && cc --version | head -n 1 && cmake --version | head -n 1
EOF
    # The rootfs as an image, then the toolchain and CAs on top.
    tar -C "$ROOTFS" --exclude=./.complete -cf - . |
        podman import --change 'CMD ["/bin/bash"]' - "localhost/portcullis-rootfs:$SUITE" >/dev/null
    timeout 1200 podman build --pull=never --network host -f "$ctx/Containerfile" -t "$BUILD_BASE" "$ctx"
    podman rmi "localhost/portcullis-rootfs:$SUITE" >/dev/null
    rm -rf "$ctx"
fi

# ---- runtime image ----------------------------------------------------------------------------
if ! podman image exists "$RUNTIME_BASE"; then
    log "making $RUNTIME_BASE (glibc, libgcc, libstdc++, libssl, CAs, tzdata; user 65532)"
    rt=$WORK/runtime-rootfs
    rm -rf "$rt"
    mkdir -p "$rt"
    # The merged-/usr links (/lib64 holds the ELF interpreter's path).
    for link in bin sbin lib lib32 lib64 libx32; do
        [[ -L $ROOTFS/$link ]] && cp -a "$ROOTFS/$link" "$rt/$link"
    done
    # The packages' files, less documentation, with paths through those links made real.
    chroot "$ROOTFS" dpkg -L libc6 libgcc-s1 libstdc++6 libssl3 tzdata netbase |
        sed -E 's#^/(bin|sbin|lib|lib32|lib64|libx32)/#/usr/\1/#' |
        grep -Ev '^/usr/share/(doc|man|lintian|locale|bug)(/|$)' |
        sort -u |
        while IFS= read -r f; do
            if [[ -L $ROOTFS$f || -f $ROOTFS$f ]]; then printf '%s\n' "${f#/}"; fi
        done >"$WORK/runtime-files.txt"
    printf '%s\n' etc/ssl/certs/ca-certificates.crt etc/os-release usr/lib/os-release \
        etc/nsswitch.conf >>"$WORK/runtime-files.txt"
    tar -C "$ROOTFS" --no-recursion -cf - -T "$WORK/runtime-files.txt" | tar -C "$rt" -xf -
    mkdir -p "$rt/tmp" "$rt/root" "$rt/home/nonroot" "$rt/etc"
    chmod 1777 "$rt/tmp"
    chmod 0700 "$rt/root" "$rt/home/nonroot"
    chown 65532:65532 "$rt/home/nonroot"
    cat >"$rt/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
    cat >"$rt/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
EOF
    tar -C "$rt" --numeric-owner -cf - . |
        podman import \
            --change 'USER 65532' \
            --change 'WORKDIR /home/nonroot' \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
            - "$RUNTIME_BASE" >/dev/null
    rm -rf "$rt"
fi

if [[ ${BASES_ONLY:-0} == 1 ]]; then
    log "base images ready: $BUILD_BASE $RUNTIME_BASE"
    exit 0
fi

# ---- the Dockerfile's targets -----------------------------------------------------------------
# A build that fails or times out can leave its RUN step's container running (runc's state is
# in /run/runc, its bundle under $TMPDIR) and buildah's working containers in the storage:
# stop and remove ours.
reap_builds() {
    local id
    for id in $(runc list -q 2>/dev/null); do
        if runc state "$id" 2>/dev/null | grep -q "\"bundle\": \"$WORK/"; then
            runc kill "$id" KILL 2>/dev/null || true
            timeout 30 runc delete --force "$id" 2>/dev/null || true
        fi
    done
    for id in $(podman ps -a --external --filter status=unknown --format '{{.ID}}' 2>/dev/null); do
        timeout 60 podman rm -f "$id" >/dev/null 2>&1 || true
    done
}
build_started=$(date +%s)
for target in gateway issuer expenses-mcp; do
    log "podman build --target $target"
    started=$(date +%s)
    timeout "$BUILD_TIMEOUT" podman build \
        --pull=never --network host --layers \
        --build-arg "BUILD_IMAGE=$BUILD_BASE" \
        --build-arg "RUNTIME_IMAGE=$RUNTIME_BASE" \
        --target "$target" \
        -t "localhost/portcullis-$target:$TAG" \
        -f "$ROOT/Dockerfile" "$ROOT" || {
        status=$?
        reap_builds
        ((status == 124)) && die "the $target image did not build within $BUILD_TIMEOUT s"
        die "the $target image did not build"
    }
    log "$target built in $(($(date +%s) - started)) s"
done
log "the three targets took $(($(date +%s) - build_started)) s"

# ---- smoke run --------------------------------------------------------------------------------
cleanup() {
    [[ ${KEEP_RUNNING:-0} == 1 ]] && return 0
    timeout 60 podman rm -f -t 5 "$ISSUER_CTR" "$GATEWAY_CTR" >/dev/null 2>&1 || true
}
trap cleanup EXIT
timeout 60 podman rm -f -t 5 "$ISSUER_CTR" "$GATEWAY_CTR" >/dev/null 2>&1 || true

for port in "$ISSUER_PORT" "$GATEWAY_PORT" "$GATEWAY_ADMIN_PORT"; do
    if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"; then
        die "something already answers on 127.0.0.1:$port (set ISSUER_PORT, GATEWAY_PORT, GATEWAY_ADMIN_PORT)"
    fi
done

# Polls URL until it answers 2xx, at most $2 seconds; prints the body.
wait_for() {
    local url=$1 deadline=$(($(date +%s) + $2)) body
    while (($(date +%s) < deadline)); do
        if body=$(curl -fsS --max-time 2 "$url" 2>/dev/null); then
            printf '%s' "$body"
            return 0
        fi
        sleep 1
    done
    return 1
}
show_logs() {
    log "logs of $1:"
    timeout 30 podman logs "$1" 2>&1 | tail -n 40 >&2 || true
}

log "starting the issuer image on 127.0.0.1:$ISSUER_PORT"
timeout 60 podman run -d --name "$ISSUER_CTR" --network host \
    -e "PORTCULLIS_ISSUER_LISTEN=127.0.0.1:$ISSUER_PORT" \
    -e "PORTCULLIS_ISSUER_URL=http://127.0.0.1:$ISSUER_PORT" \
    "localhost/portcullis-issuer:$TAG" >/dev/null
issuer_health=$(wait_for "http://127.0.0.1:$ISSUER_PORT/healthz" 60) || {
    show_logs "$ISSUER_CTR"
    die "the issuer's /healthz did not answer within 60 s"
}
log "issuer GET /healthz -> $issuer_health"

cat >"$WORK/smoke/gateway.yaml" <<EOF
# Written by scripts/build-images.sh for its smoke run.
listen: 127.0.0.1:$GATEWAY_PORT
admin_listen: 127.0.0.1:$GATEWAY_ADMIN_PORT
public_url: http://127.0.0.1:$GATEWAY_PORT
issuer:
  url: http://127.0.0.1:$ISSUER_PORT
upstreams:
  - name: expenses
    url: http://127.0.0.1:8001/mcp
EOF
chmod 0644 "$WORK/smoke/gateway.yaml"
log "starting the gateway image on 127.0.0.1:$GATEWAY_PORT (admin $GATEWAY_ADMIN_PORT)"
timeout 60 podman run -d --name "$GATEWAY_CTR" --network host \
    -v "$WORK/smoke/gateway.yaml:/etc/portcullis/gateway/gateway.yaml:ro" \
    "localhost/portcullis-gateway:$TAG" >/dev/null
gateway_health=$(wait_for "http://127.0.0.1:$GATEWAY_ADMIN_PORT/healthz" 60) || {
    show_logs "$GATEWAY_CTR"
    die "the gateway's admin /healthz did not answer within 60 s"
}
log "gateway GET /healthz -> $gateway_health"
# Ready once it has the issuer's signing keys.
gateway_ready=$(wait_for "http://127.0.0.1:$GATEWAY_ADMIN_PORT/readyz" 60) || {
    show_logs "$GATEWAY_CTR"
    die "the gateway's admin /readyz did not answer 200 within 60 s"
}
log "gateway GET /readyz -> $gateway_ready"
# The example server's image runs too.
mcp_help=$(timeout 60 podman run --rm --network host "localhost/portcullis-expenses-mcp:$TAG" --help 2>&1 | head -n 1) ||
    die "the expenses-mcp image did not run"
log "expenses-mcp --help -> $mcp_help"

# ---- sizes --------------------------------------------------------------------------------------
log "images (uncompressed sizes):"
for image in "localhost/portcullis-gateway:$TAG" "localhost/portcullis-issuer:$TAG" \
    "localhost/portcullis-expenses-mcp:$TAG" "$RUNTIME_BASE" "$BUILD_BASE"; do
    podman image inspect --format '{{.Size}}' "$image" |
        awk -v image="$image" '{ printf "  %-52s %7.1f MB\n", image, $1 / 1e6 }'
done
log "ok"
