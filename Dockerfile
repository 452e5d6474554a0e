# syntax=docker/dockerfile:1.7
# Static, non-root image of relay-pki. Build with `make image`.
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN --mount=type=cache,target=/root/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/relay-pki/relay-pki/internal/version.Version=${VERSION} -X github.com/relay-pki/relay-pki/internal/version.Commit=${COMMIT}" \
      -o /out/relay-pki ./cmd/relay-pki

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/relay-pki /relay-pki
USER 65532:65532
ENTRYPOINT ["/relay-pki"]
