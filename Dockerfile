# The login-etl image: a compiled binary on distroless "cc", which has the
# glibc and libgcc the Deno runtime links against and nothing else (no shell,
# no package manager). Its :nonroot variant runs as uid/gid 65532.
#
# For linux/amd64 and linux/arm64, as the release workflow pushes it: each
# platform copies its own binary of `make build-all`, so nothing is compiled
# or run inside the image and no emulation is needed.
#   make build-all && docker buildx build --platform linux/amd64,linux/arm64 -t login-etl:0.1.0 .
# From `make build` on a Linux machine (dist/login-etl, built for that
# machine's CPU), for that CPU only:
#   make build && docker build --build-arg SOURCE=local -t login-etl:0.1.0 .
#
# The stages are chosen by name (BuildKit, Docker's default builder, builds
# only the stages the last one needs), from TARGETARCH, which the builder sets
# for each platform.
ARG SOURCE=release

FROM scratch AS release-amd64
COPY dist/login-etl-x86_64-unknown-linux-gnu /login-etl

FROM scratch AS release-arm64
COPY dist/login-etl-aarch64-unknown-linux-gnu /login-etl

FROM scratch AS local-amd64
COPY dist/login-etl /login-etl

FROM scratch AS local-arm64
COPY dist/login-etl /login-etl

FROM ${SOURCE}-${TARGETARCH} AS binary

FROM gcr.io/distroless/cc-debian12:nonroot
# COPY keeps the executable bit of `deno compile`'s output; the file is owned
# by root, so the process (below) cannot change it.
COPY --from=binary /login-etl /login-etl

# Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
# /metrics, /healthz and /readyz of `run --listen :9464`.
EXPOSE 9464
ENTRYPOINT ["/login-etl"]
CMD ["run", "--listen", ":9464"]
