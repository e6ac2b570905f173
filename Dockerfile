# oceanhooks: a static binary on a distroless base, run as a non-root user.
#   docker build -t oceanhooks .
# The build stage runs the same build command as .ci/run (which checks that
# the result is static), so a green CI means this image builds the same way.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/oceanhooks . \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/oceanhooks /usr/local/bin/oceanhooks
COPY --from=build --chown=65532:65532 /out/data /var/lib/oceanhooks
# Defaults for a container; override any of them (or mount a config file and
# set OCEANHOOKS_CONFIG) in your compose file.
ENV OCEANHOOKS_LISTEN=":3001" \
    OCEANHOOKS_DATA_DIR="/var/lib/oceanhooks" \
    OCEANHOOKS_LOG_FORMAT="json"
USER 65532:65532
VOLUME ["/var/lib/oceanhooks"]
EXPOSE 3001
# The admin listener stays on the container's loopback: the health check runs
# inside the container and needs no token.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/oceanhooks", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/oceanhooks"]
CMD ["serve"]
