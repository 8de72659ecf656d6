# The login-etl image: the binary that `make build` compiles on linux x86_64
# (dist/login-etl), on distroless "cc", which has the glibc and libgcc the Deno
# runtime links against and nothing else (no shell, no package manager). Its
# :nonroot variant runs as uid/gid 65532.
#
#   make build && docker build -t login-etl:0.1.0 .
#
# On another OS or CPU, cross-compile first and point BINARY at it:
#   make build-all && docker build --build-arg BINARY=dist/login-etl-x86_64-unknown-linux-gnu -t login-etl .

# The binary is x86_64 whatever machine builds the image.
FROM --platform=linux/amd64 gcr.io/distroless/cc-debian12:nonroot

ARG BINARY=dist/login-etl
# COPY keeps the executable bit of `deno compile`'s output; the file is owned
# by root, so the process (below) cannot change it.
COPY ${BINARY} /login-etl

# Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
# /metrics, /healthz and /readyz of `run --listen :9464`.
EXPOSE 9464
ENTRYPOINT ["/login-etl"]
CMD ["run", "--listen", ":9464"]
