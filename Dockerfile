# syntax=docker/dockerfile:1
# The kubernetes-mcp-server container image: the server and the WebAssembly
# kubectl plugins it can sandbox without a container runtime.
#
#   docker build -t kubernetes-mcp-server .      (podman: add --format docker,
#                                                 or the OCI format drops HEALTHCHECK)
#   install -m 0600 -o 65532 -g 65532 /dev/null token && openssl rand -hex 32 >token
#   docker run -d -p 127.0.0.1:8080:8080 --read-only --cap-drop ALL \
#     --security-opt no-new-privileges --tmpfs /tmp \
#     -v kmcp-cache:/var/cache/kubernetes-mcp-server -v kmcp-state:/var/lib/kubernetes-mcp-server \
#     -v kmcp-audit:/var/log/kubernetes-mcp-server \
#     -v "$PWD/token:/var/run/secrets/kubernetes-mcp-server/token:ro" kubernetes-mcp-server
#
# New named volumes start with the image's folders (owner and content: the
# compiled plugins). A tmpfs works too, if owned by 65532 (podman: --mount
# type=tmpfs,destination=DIR,U=true); docker's --tmpfs starts empty, so the
# plugins are compiled again at start (about 30 s on two cores).
#
# What it serves: MCP over HTTP on port 8080 (/mcp, /sse, /health) with the
# configuration deploy/image/config.toml, as uid:gid 65532:65532, and the
# WebAssembly plugins kube-score (kubectl-score.wasm), manifest-lint and
# pod-list, each call in its own wazero instance. What it does not: a
# container cannot reach a containerd, so native plugins cannot be
# sandboxed here; the native plugins of the proposal (get_all, cnpg,
# rook_ceph, neat, ctx, ns) are left out, and any native plugin found is
# listed and refused. krew is in the image (/usr/local/bin/kubectl-krew) but
# git is not, so krew cannot clone an index: installs are off in the
# configuration.
#
# The base images are build arguments (GO_IMAGE, RUNTIME_IMAGE), so that
# hack/build-container-image.sh can build offline from local images. The
# runtime stage runs no package manager: it needs only a shell, coreutils
# and bash (for the HEALTHCHECK), which every Debian image has.
ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${GO_IMAGE} AS build
# Unset unless given (a build argument is in the environment of RUN only
# when passed), so Go's defaults and the base image's hold: an offline
# build (hack/build-container-image.sh) passes a module cache and a build
# cache of its own, mounted with `podman build -v` (the cache mounts below
# then go unused), that module cache as GOPROXY (file://) and GOSUMDB=off.
ARG GOPROXY
ARG GOSUMDB
ARG GOFLAGS
ARG GOMODCACHE
ARG GOCACHE
ENV CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN=local
WORKDIR /src

# Third-party plugins first: they change only with their version.
# kube-score for WebAssembly (as hack/build-wasm-plugins.sh builds it): go
# install of another platform refuses GOBIN and installs into
# $GOPATH/bin/wasip1_wasm; a GOPATH of its own, over the module cache.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    export GOMODCACHE="$(go env GOMODCACHE)" && \
    GOOS=wasip1 GOARCH=wasm GOPATH=/tmp/wasm go install -trimpath -ldflags=-s \
        github.com/zegl/kube-score/cmd/kube-score@v1.20.0 && \
    install -D -m 0644 /tmp/wasm/bin/wasip1_wasm/kube-score /out/plugins/kubectl-score.wasm && \
    rm -rf /tmp/wasm
# krew, native (as hack/build-plugins.sh builds it).
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOBIN=/tmp/krew go install -trimpath -ldflags=-s sigs.k8s.io/krew/cmd/krew@v0.4.3 && \
    install -D -m 0755 /tmp/krew/krew /out/bin/kubectl-krew && \
    rm -rf /tmp/krew

COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# The WebAssembly examples of this repository.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags=-s -o /out/plugins/kubectl-manifest_lint.wasm ./examples/plugins/manifest-lint && \
    GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags=-s -o /out/plugins/kubectl-pod_list.wasm ./examples/wasm/pod-list && \
    chmod 0644 /out/plugins/*.wasm
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/bin/kubernetes-mcp-server ./cmd/kubernetes-mcp-server

FROM ${RUNTIME_IMAGE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="kubernetes-mcp-server" \
      org.opencontainers.image.description="MCP server that runs kubectl plugins, each call in a fresh sandbox (WebAssembly plugins in this image)" \
      org.opencontainers.image.version="${VERSION}"
# The build stage's CA bundle: Debian's slim image has none, and the
# server checks Rancher's and the clusters' certificates against it.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# User mcp (65532:65532), written straight into the files so that no
# passwd tools are needed; the folders the server writes, owned by it (mount
# them writable when the root is read-only); the token's mount point.
RUN set -eu; \
    grep -q '^mcp:' /etc/group || echo 'mcp:x:65532:' >>/etc/group; \
    grep -q '^mcp:' /etc/passwd || echo 'mcp:x:65532:65532:kubernetes-mcp-server:/home/mcp:/usr/sbin/nologin' >>/etc/passwd; \
    install -d -o 65532 -g 65532 -m 0750 /home/mcp \
        /var/cache/kubernetes-mcp-server /var/cache/kubernetes-mcp-server/wasm \
        /var/lib/kubernetes-mcp-server /var/lib/kubernetes-mcp-server/krew \
        /var/log/kubernetes-mcp-server; \
    install -d -m 0755 /etc/kubernetes-mcp-server /usr/local/lib/kubernetes-mcp-server/plugins \
        /var/run/secrets/kubernetes-mcp-server /home/mcp/.krew/bin
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build /out/plugins/ /usr/local/lib/kubernetes-mcp-server/plugins/
COPY deploy/image/config.toml /etc/kubernetes-mcp-server/config.toml
COPY deploy/image/healthcheck /usr/local/libexec/kubernetes-mcp-server/healthcheck
# XDG_CACHE_HOME: the plugin cache (plugins-cache.json) goes to the
# writable cache folder too, not the read-only home.
ENV HOME=/home/mcp XDG_CACHE_HOME=/var/cache KREW_NO_UPGRADE_CHECK=1
USER 65532:65532
# Compile the plugins once now (this also proves the configuration loads):
# the compiled modules land in the image's wasm_cache_dir, so a server whose
# /var/cache/kubernetes-mcp-server starts from the image's content (a
# named volume, podman's tmpfs with U=true) is ready in about 3 s, against 30 s
# on two cores with an empty cache. wazero keys them by CPU features, so on
# another CPU they are compiled again.
RUN ["/usr/local/bin/kubernetes-mcp-server", "plugins", "list", "--config", "/etc/kubernetes-mcp-server/config.toml"]
EXPOSE 8080
# GET /health (public, no token) with bash's /dev/tcp: the base has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=2m --retries=3 \
    CMD ["/usr/local/libexec/kubernetes-mcp-server/healthcheck"]
ENTRYPOINT ["/usr/local/bin/kubernetes-mcp-server"]
CMD ["--config", "/etc/kubernetes-mcp-server/config.toml"]
