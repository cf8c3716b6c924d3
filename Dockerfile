# One image with the three binaries: campaignd, campaignctl, pushsim.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/...

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
COPY configs/ /etc/campaignd/
USER nonroot:nonroot
EXPOSE 8080 9900
ENTRYPOINT ["/usr/local/bin/campaignd"]
CMD ["-config", "/etc/campaignd/docker.yaml"]
