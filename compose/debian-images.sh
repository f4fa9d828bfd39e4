#!/usr/bin/env bash
# Base images built from Debian packages, for a Docker engine that cannot pull from Docker Hub
# (docs/compose.md, "Without Docker Hub"). mmdebstrap lays out a bookworm minbase with the named
# packages and `docker import` turns it into an image. An image whose recipe (this file) has not
# changed since it was built is kept, so only the first run on a machine pays for it.
#
#   compose/debian-images.sh python       # stands in for python:3.11-slim   (OBSLAB_PYTHON_IMAGE)
#   compose/debian-images.sh prometheus   # stands in for prom/prometheus    (OBSLAB_PROMETHEUS_IMAGE)
#
# Prints the image's tag on stdout. Needs root, mmdebstrap and a running Docker engine.
set -euo pipefail

PYTHON_IMAGE=obslab-debian/python:3.11-bookworm
PROMETHEUS_IMAGE=obslab-debian/prometheus:2-bookworm
SUITE=bookworm
RECIPE=$(sha256sum "$0" | cut -c1-16)
# The machine's CA bundle: where TLS to the package registries is intercepted, pip inside the
# image must trust what the host trusts.
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

usage() { echo "usage: $0 python|prometheus" >&2; exit 2; }

up_to_date() {
    [ "$(docker image inspect --format '{{ index .Config.Labels "obslab.recipe" }}' "$1" 2>/dev/null)" = "$RECIPE" ]
}

# mmdebstrap SUITE - | docker import: $1 tag, $2 packages, then --change instructions for the image.
build() {
    local tag=$1 packages=$2
    shift 2
    local changes=(--change "LABEL obslab.recipe=$RECIPE")
    for c in "$@"; do changes+=(--change "$c"); done
    local hooks=(--customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*')
    if [ "$tag" = "$PYTHON_IMAGE" ] && [ -f "$HOST_CA_BUNDLE" ]; then
        hooks+=(--customize-hook="copy-in $HOST_CA_BUNDLE /etc/ssl/certs")
    fi
    if [ "$tag" = "$PROMETHEUS_IMAGE" ]; then
        # The official image's layout: TSDB in /prometheus, owned by nobody, which Prometheus runs as.
        hooks+=(--customize-hook='mkdir -p "$1/prometheus" && chown 65534:65534 "$1/prometheus"')
    fi
    echo "building $tag from Debian $SUITE packages: $packages" >&2
    mmdebstrap --quiet --variant=minbase --include="$packages" \
        --aptopt='APT::Install-Recommends "false"' \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt=force-unsafe-io \
        "${hooks[@]}" "$SUITE" - | docker import "${changes[@]}" - "$tag" >/dev/null
}

[ $# -eq 1 ] || usage
case $1 in
    python)
        tag=$PYTHON_IMAGE
        up_to_date "$tag" || build "$tag" python3,python3-venv,ca-certificates \
            "ENV LANG=C.UTF-8 PIP_CERT=$HOST_CA_BUNDLE SSL_CERT_FILE=$HOST_CA_BUNDLE" \
            'CMD ["python3"]'
        ;;
    prometheus)
        tag=$PROMETHEUS_IMAGE
        # wget: the compose health check's probe, as in the official (busybox) image.
        up_to_date "$tag" || build "$tag" prometheus,wget \
            'USER 65534' 'WORKDIR /prometheus' 'EXPOSE 9090' \
            'ENTRYPOINT ["/usr/bin/prometheus"]' \
            'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]'
        ;;
    *) usage ;;
esac
echo "$tag"
