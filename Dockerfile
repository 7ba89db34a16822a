# sbcwatch: a static binary in a distroless image, run as a non-root user.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse HEAD) --build-arg DATE=$(git log -1 --format=%cI) -t sbcwatch .
#
# The binary carries the file capabilities cap_net_raw and cap_net_admin
# (packet capture, promiscuous mode) and nothing else, so the container
# must be started with exactly those added back, as docker-compose.yml
# does:  --cap-drop ALL --cap-add NET_RAW --cap-add NET_ADMIN
# (without them the kernel refuses to start a binary whose capabilities
# it cannot grant).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=
ARG DATE=
# A Docker context has no .git, so Go stamps no VCS information: the
# -ldflags values are what `sbcwatch version` prints.
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.date=${DATE}" \
      -o /out/sbcwatch ./cmd/sbcwatch \
 && apt-get update -qq && apt-get install -y -qq --no-install-recommends libcap2-bin >/dev/null \
 && setcap cap_net_raw,cap_net_admin=ep /out/sbcwatch

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sbcwatch /usr/local/bin/sbcwatch
COPY sbcwatch.example.yaml /etc/sbcwatch/sbcwatch.yaml
USER nonroot:nonroot
EXPOSE 8080
ENV SBCWATCH_LOG_FORMAT=json
ENTRYPOINT ["/usr/local/bin/sbcwatch"]
CMD ["serve", "--config", "/etc/sbcwatch/sbcwatch.yaml", "--listen", "0.0.0.0:8080"]
