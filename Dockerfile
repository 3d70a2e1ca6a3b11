# The LeForge runtime image: the static `leforge` binary on an empty base, so the image holds
# nothing else to patch (no libc, no shell). Build the binary first, then the image:
#
#   RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu
#   docker build -t leforge .
#
# With a registry at hand, docker/Dockerfile.build does both in one multi-stage build.
FROM scratch
# Another build of the binary (a debug one, say) can be passed with --build-arg.
ARG LEFORGE_BINARY=target/x86_64-unknown-linux-gnu/release/leforge
COPY ${LEFORGE_BINARY} /leforge
COPY --chown=65532:65532 docker/data/ /data/
# Not root: the uid has no name, because there is no /etc/passwd to give it one.
USER 65532:65532
# In a container the server must listen beyond loopback; SQLite in /data is the default.
ENV LEFORGE_LISTEN=0.0.0.0:4000 \
    LEFORGE_DATA_DIR=/data \
    LEFORGE_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 4000
HEALTHCHECK --interval=15s --timeout=7s --start-period=60s --retries=3 \
    CMD ["/leforge", "healthcheck"]
ENTRYPOINT ["/leforge"]
CMD ["serve"]
