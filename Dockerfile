# Builds the dicomweb-oauth service image:
#   docker build -t dicomweb-oauth .
# Run it with a configuration whose listeners are on 0.0.0.0, because the
# defaults are loopback only:
#   docker run -v ./config.yaml:/etc/dicomweb-oauth/config.yaml:ro dicomweb-oauth
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY extproc ./extproc
COPY tokens ./tokens
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/dicomweb-oauth ./cmd/dicomweb-oauth

# distroless/static has CA certificates and runs as a non-root user.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/dicomweb-oauth /usr/local/bin/dicomweb-oauth
USER nonroot:nonroot
EXPOSE 9001 9002 9901
# Ready once every cluster's first token request has ended; the admin
# listener must be reachable on 127.0.0.1:9901 inside the container.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s \
  CMD ["/usr/local/bin/dicomweb-oauth", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/dicomweb-oauth"]
CMD ["serve", "--config", "/etc/dicomweb-oauth/config.yaml"]
