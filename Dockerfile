# Two images from one file:
# - the default target: bitbucket-status, a FROM scratch image with the binary,
#   CA roots and the static busybox shell GitLab Runner needs to run a job;
# - target relay: bitbucket-status-relay, FROM scratch, the relay binary, CA
#   roots, a non-root user and a /data volume for its store.
#
#   buildah bud --build-arg VERSION=1.2.3 -t bitbucket-status:1.2.3 .
#   docker build --build-arg VERSION=1.2.3 -t bitbucket-status:1.2.3 .
#   docker build --target relay --build-arg VERSION=1.2.3 -t bitbucket-status/relay:1.2.3 .
#
# The base images are build arguments so a registry mirror or GitLab's
# dependency proxy can stand in, e.g.
#   --build-arg GO_IMAGE=$CI_DEPENDENCY_PROXY_GROUP_IMAGE_PREFIX/golang:1.26.8-bookworm
# GO_IMAGE needs only `go`, a POSIX shell (mkdir, ln, cp, chmod) and the CA
# bundle at /etc/ssl/certs/ca-certificates.crt. SHELL_IMAGE needs a static
# busybox at /bin/busybox.
ARG GO_IMAGE=golang:1.26.8-bookworm
ARG SHELL_IMAGE=busybox:1.37.0-musl

# The build runs on the builder's own platform and cross-compiles, so an
# arm64 image builds without emulation.
FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS modules
ARG GOPROXY
ENV CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local GOPROXY=${GOPROXY}
WORKDIR /src
# Modules first, in a layer of their own: it is reused until go.sum changes.
COPY go.mod go.sum ./
RUN go mod download
COPY src ./src

FROM modules AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
RUN GOOS="${TARGETOS:-$(go env GOOS)}" GOARCH="${TARGETARCH:-$(go env GOARCH)}" \
    go build -tags urfave_cli_no_docs,nethttpomithttp2 -ldflags "-s -w -X main.version=${VERSION}" \
      -o /rootfs/usr/local/bin/bitbucket-status ./src/cmd/bitbucket-status
# The rest of the root file system, made here because a scratch stage cannot
# run commands: /tmp, the CA bundle, and one link per busybox applet that job
# scripts and GitLab Runner use (links work with any busybox build, whether or
# not its shell runs applets by itself).
RUN mkdir -p /rootfs/bin /rootfs/usr/bin /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/root \
 && chmod 1777 /rootfs/tmp \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt \
 && for applet in sh ash awk base64 basename cat chmod cp cut date dirname du echo egrep env expr false fgrep find \
      grep gunzip gzip head hostname id kill ln ls md5sum mkdir mktemp mv printf ps pwd readlink realpath rm rmdir \
      sed seq sha256sum sleep sort stat tail tar tee test timeout touch tr true uname uniq unzip wc wget which \
      xargs zcat '['; do ln -s busybox "/rootfs/bin/$applet"; done \
 && ln -s /bin/busybox /rootfs/usr/bin/env \
 && printf 'root:x:0:0:root:/root:/bin/sh\n' >/rootfs/etc/passwd \
 && printf 'root:x:0:\n' >/rootfs/etc/group

FROM modules AS relay-build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
RUN GOOS="${TARGETOS:-$(go env GOOS)}" GOARCH="${TARGETARCH:-$(go env GOARCH)}" \
    go build -tags urfave_cli_no_docs -ldflags "-s -w -X main.version=${VERSION}" \
      -o /rootfs/usr/local/bin/bitbucket-status-relay ./src/cmd/bitbucket-status-relay
# The relay runs as an unprivileged user (65532, "relay") that owns /data,
# where the embedded store lives; /tmp for SQLite's temporary files.
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/data /rootfs/tmp \
 && chmod 1777 /rootfs/tmp && chown 65532:65532 /rootfs/data && chmod 0700 /rootfs/data \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt \
 && printf 'relay:x:65532:65532:bitbucket-status-relay:/data:/sbin/nologin\n' >/rootfs/etc/passwd \
 && printf 'relay:x:65532:\n' >/rootfs/etc/group

# The relay: docker run -v relay-data:/data -e ... $CI_REGISTRY_IMAGE/relay:1.2.3
FROM scratch AS relay
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://gitlab.com/bitbucket-status/bitbucket-status
COPY --from=relay-build /rootfs/ /
USER 65532:65532
ENV BITBUCKET_RELAY_DATA=/data BITBUCKET_RELAY_LISTEN=:8080
VOLUME /data
EXPOSE 8080
LABEL org.opencontainers.image.title="bitbucket-status-relay" \
      org.opencontainers.image.description="GitLab pipeline webhooks in, Bitbucket Cloud and Data Center build statuses out" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT"
ENTRYPOINT ["bitbucket-status-relay"]
CMD ["serve"]

FROM ${SHELL_IMAGE} AS shell

# The job image, last so that it stays the default target.

FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://gitlab.com/bitbucket-status/bitbucket-status
COPY --from=shell /bin/busybox /bin/busybox
COPY --from=build /rootfs/ /
# GitLab Runner starts the container with its own `sh -c ...` command: no
# ENTRYPOINT, or it would receive that command as arguments. The user stays
# root: the runner's docker executor writes file variables and the job script
# under the builds directory, which with a host bind mount a non-root user
# cannot write (see README, "The image").
ENV PATH=/usr/local/bin:/usr/bin:/bin
LABEL org.opencontainers.image.title="bitbucket-status" \
      org.opencontainers.image.description="Posts GitLab CI/CD results to Bitbucket Cloud and Data Center as commit build statuses" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT"
CMD ["bitbucket-status", "--help"]
