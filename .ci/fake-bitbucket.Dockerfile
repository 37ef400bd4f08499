# The Bitbucket stand-in as a service container, for the pipeline's self-test
# (.gitlab-ci.yml). A test tool: never published as a release.
ARG GO_IMAGE=golang:1.26.8-bookworm
FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
ARG TARGETOS
ARG TARGETARCH
ARG GOPROXY
ENV CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local GOPROXY=${GOPROXY}
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY src ./src
RUN GOOS="${TARGETOS:-$(go env GOOS)}" GOARCH="${TARGETARCH:-$(go env GOARCH)}" \
    go build -ldflags "-s -w" -o /fake-bitbucket ./src/cmd/fake-bitbucket

FROM scratch
COPY --from=build /fake-bitbucket /fake-bitbucket
EXPOSE 8443 8080
ENTRYPOINT ["/fake-bitbucket"]
CMD ["-listen", ":8443", "-self-signed", "bitbucket", "-ca-listen", ":8080"]
