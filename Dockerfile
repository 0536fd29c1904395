# The operator image: the release binary on distroless (glibc, no shell), as nonroot.
#   docker build -t mediastack-operator:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the registry and target dir between builds; the binary
# is copied out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build -p mediastack-operator --release --locked \
 && cp target/release/mediastack-operator /mediastack-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /mediastack-operator /mediastack-operator
USER nonroot
EXPOSE 8080
ENTRYPOINT ["/mediastack-operator"]
CMD ["run"]
