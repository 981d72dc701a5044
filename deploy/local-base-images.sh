#!/bin/sh
# Build the two base images docker-compose.yml needs, from Debian packages only,
# for a machine that reaches Debian's archive and PyPI but no container registry:
#
#   sudo deploy/local-base-images.sh            # build what is missing or out of date
#   sudo deploy/local-base-images.sh --rebuild  # build all three again
#
# then start the stack on them (the names printed at the end):
#
#   PYTHON_IMAGE=pullchat-base/python:3.11 REDIS_IMAGE=pullchat-base/redis:7 \
#     docker-compose up -d --build
#
# Images, all under BASE_PREFIX (default pullchat-base), never an official name:
#   $BASE_PREFIX/debian:bookworm  a minimal Debian made by debootstrap and imported
#   $BASE_PREFIX/python:3.11      Debian's python3 (3.11) with pip and venv, `python`
#                                 and `pip` on PATH, pip allowed to install system-wide
#   $BASE_PREFIX/redis:7          Debian's redis-server (7.0) started like the official
#                                 image: in /data, as user redis, not in protected mode
#
# An image that exists and was made by this version of the script (a label holds
# its hash) is kept. Needs root (debootstrap), debootstrap and a docker client;
# DOCKER_HOST is honoured. Settings (environment):
#   BASE_PREFIX    name prefix of the images (pullchat-base)
#   DEBIAN_MIRROR  archive debootstrap and apt use (http://deb.debian.org/debian)
#   CA_BUNDLE      CA certificates the python image trusts for pip, copied in as
#                  /etc/ssl/certs/ca-certificates.crt (/etc/ssl/certs/ca-certificates.crt,
#                  this machine's, so that pip works wherever pip works here)
set -eu

prefix=${BASE_PREFIX:-pullchat-base}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
suite=bookworm
rebuild=no
case "${1:-}" in
    '') ;;
    --rebuild) rebuild=yes ;;
    *)
        echo "usage: $0 [--rebuild]" >&2
        exit 2
        ;;
esac

debian_image=$prefix/debian:$suite
python_image=$prefix/python:3.11
redis_image=$prefix/redis:7

for tool in docker debootstrap tar sha256sum; do
    command -v "$tool" >/dev/null || {
        echo "$0: $tool not found (Debian: apt-get install docker.io debootstrap)" >&2
        exit 1
    }
done
[ -r "$ca_bundle" ] || {
    echo "$0: CA bundle $ca_bundle not readable (set CA_BUNDLE)" >&2
    exit 1
}
docker version >/dev/null || {
    echo "$0: no Docker engine answers (is dockerd running? DOCKER_HOST?)" >&2
    exit 1
}

# Every image carries the hash of this script (and the python image that of the CA
# bundle too): a changed recipe builds again.
recipe=$(sha256sum "$0" | cut -c1-16)
ca_hash=$(sha256sum "$ca_bundle" | cut -c1-16)
label=pullchat.base-recipe

current() {  # current IMAGE WANTED-LABEL: the image exists and carries that label
    [ "$rebuild" = no ] &&
        [ "$(docker image inspect --format "{{index .Config.Labels \"$label\"}}" "$1" 2>/dev/null)" = "$2" ]
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if current "$debian_image" "$recipe"; then
    echo "$debian_image: up to date"
else
    echo "$debian_image: debootstrap $suite from $mirror"
    debootstrap --variant=minbase "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
        tail -n 30 "$work/debootstrap.log" >&2
        exit 1
    }
    # What an image needs no copy of: apt's downloads and lists, logs.
    rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/cache/apt/*.bin "$work"/rootfs/var/lib/apt/lists/* \
        "$work"/rootfs/var/log/* "$work"/rootfs/tmp/*
    echo "deb $mirror $suite main" >"$work/rootfs/etc/apt/sources.list"
    tar -C "$work/rootfs" -c . | docker import \
        --change "LABEL $label=$recipe" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
        --change 'CMD ["bash"]' \
        - "$debian_image" >/dev/null
    rm -rf "$work/rootfs"
fi

# The python and redis images are built side by side; their output goes to a log each.
jobs=""
build() {  # build NAME IMAGE: docker build of $work/NAME in the background
    docker build -t "$2" "$work/$1" >"$work/$1.log" 2>&1 &
    jobs="$jobs $!:$1"
}

# apt inside a build: no prompts, no recommended extras, no lists left in the layer.
apt_install='apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends'
apt_clean='rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /var/log/apt /var/log/dpkg.log'

if current "$python_image" "$recipe-$ca_hash"; then
    echo "$python_image: up to date"
else
    echo "$python_image: python3 from Debian"
    mkdir "$work/python"
    # After the packages: installing ca-certificates would write the bundle anew.
    cp "$ca_bundle" "$work/python/ca-certificates.crt"
    cat >"$work/python/Dockerfile" <<EOF
FROM $debian_image
RUN $apt_install python3 python3-pip python3-venv >/dev/null \\
    && $apt_clean \\
    && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED \\
    && ln -s /usr/bin/python3 /usr/local/bin/python \\
    && ln -s /usr/bin/pip3 /usr/local/bin/pip \\
    && python --version && pip --version
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
LABEL $label=$recipe-$ca_hash
CMD ["python3"]
EOF
    build python "$python_image"
fi

if current "$redis_image" "$recipe"; then
    echo "$redis_image: up to date"
else
    echo "$redis_image: redis-server from Debian"
    mkdir "$work/redis"
    # Like the official image's entrypoint: a bare option list is redis-server's, the
    # data folder is made the redis user's, and the server runs as that user. Unlike
    # the official build, Debian's redis-server starts in protected mode (only
    # loopback clients when no password is set), so every redis-server command line
    # gets --protected-mode no last, where it wins.
    cat >"$work/redis/entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
case "${1:-}" in
    -*) set -- redis-server "$@" ;;
esac
if [ "${1:-}" = redis-server ] || [ "${1:-}" = /usr/bin/redis-server ]; then
    set -- "$@" --protected-mode no
    if [ "$(id -u)" = 0 ]; then
        find . \! -user redis -exec chown redis:redis '{}' +
        exec setpriv --reuid=redis --regid=redis --init-groups "$@"
    fi
fi
exec "$@"
EOF
    chmod 0755 "$work/redis/entrypoint.sh"
    cat >"$work/redis/Dockerfile" <<EOF
FROM $debian_image
RUN $apt_install redis-server redis-tools >/dev/null \\
    && $apt_clean \\
    && mkdir -p /data && chown redis:redis /data \\
    && redis-server --version
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
VOLUME /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
LABEL $label=$recipe
EOF
    build redis "$redis_image"
fi

failed=no
for job in $jobs; do
    wait "${job%%:*}" || {
        echo "$0: building the ${job#*:} image failed:" >&2
        tail -n 40 "$work/${job#*:}.log" >&2
        failed=yes
    }
done
[ "$failed" = no ] || exit 1

echo "PYTHON_IMAGE=$python_image"
echo "REDIS_IMAGE=$redis_image"
