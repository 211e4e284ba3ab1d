# Switchyard container image. Stages: `build` compiles the `switchyard` binary on Debian 12 with
# the project's own scripts; `cpu` (the default, last stage) is the slim runtime image; `gpu` is
# the CUDA variant (`--target gpu`). docs/deploy.md ("Container image") has the commands.
#
#   docker build -t switchyard:latest .
#   docker run --rm -p 8000:8000 -p 50051:50051 -v /srv/models:/models:ro switchyard:latest
#
# The ENTRYPOINT is the switchyard binary and the arguments start with `serve`: every flag can be
# passed, e.g. `docker run ... switchyard:latest serve --model /models/m --host 0.0.0.0 ...`
# (give --host 0.0.0.0 again when overriding: the server's own default is 127.0.0.1).

ARG DEBIAN_IMAGE=debian:bookworm
ARG DEBIAN_RUNTIME_IMAGE=debian:bookworm-slim
# CUDA 13.0 is the toolkit the CUDA backend is developed and tested with (docs/cuda.md).
ARG CUDA_VERSION=13.0.1
ARG CUDA_DEVEL_IMAGE=nvidia/cuda:${CUDA_VERSION}-devel-ubuntu24.04
ARG CUDA_RUNTIME_IMAGE=nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu24.04

# ---- build dependencies: scripts/install-deps.sh --build-only (its own layer, so source changes
# do not reinstall them).
FROM ${DEBIAN_IMAGE} AS build-deps
WORKDIR /src
COPY scripts/apt-install.sh scripts/install-deps.sh scripts/install-sentencepiece.sh scripts/
RUN bash scripts/install-deps.sh --build-only && rm -rf /var/lib/apt/lists/*

# ---- sources: what building the binary reads (both builds below start from here).
FROM build-deps AS sources
COPY CMakeLists.txt ./
COPY cmake cmake
COPY configs configs
COPY kernels kernels
COPY engine engine
COPY proto proto
COPY server server
COPY scripts/build.sh scripts/

# ---- build: the `switchyard` binary only (tests off), Release, without CUDA.
FROM sources AS build
RUN bash scripts/build.sh -DSWITCHYARD_BUILD_TESTS=OFF -DSWITCHYARD_CUDA=OFF \
 && strip build/server/switchyard \
 && install -D build/server/switchyard /out/usr/local/bin/switchyard
# The Debian packages that hold the shared libraries the binary loads (ldd): the runtime stage
# installs exactly these, so the list cannot drift from the link line.
RUN ldd /out/usr/local/bin/switchyard | awk '$2 == "=>" && $3 ~ /^\// {print $3}' \
    | while read -r lib; do dpkg -S "*/$(basename "$lib")" | awk -F': ' '{print $1}'; done \
    | tr ',' '\n' | sed 's/ //g; s/:.*//' \
    | sort -u > /out/runtime-packages.txt \
 && cat /out/runtime-packages.txt

# ---- gpu build: the same, with nvcc, cuBLAS and NCCL taken from NVIDIA's CUDA devel image (the
# toolkit is distribution-independent; Debian 12's gcc 12 is a supported host compiler).
FROM ${CUDA_DEVEL_IMAGE} AS cuda-devel

FROM sources AS build-gpu
ARG CUDA_ARCHITECTURES=90
COPY --from=cuda-devel /usr/local/cuda/ /usr/local/cuda/
COPY --from=cuda-devel /usr/include/nccl.h /usr/include/
COPY --from=cuda-devel /usr/lib/x86_64-linux-gnu/libnccl.so* /usr/lib/x86_64-linux-gnu/
RUN bash scripts/build.sh -DSWITCHYARD_BUILD_TESTS=OFF -DSWITCHYARD_CUDA=ON \
      -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc \
      -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}" \
 && strip build/server/switchyard \
 && install -D build/server/switchyard /out/usr/local/bin/switchyard
# The runtime base is Ubuntu (NVIDIA's), whose packages differ from Debian 12's: copy exactly the
# shared libraries ldd names, except glibc, the C++ runtime (the base's are newer and compatible)
# and the CUDA libraries the base provides (cudart, cuBLAS, NCCL; libcuda comes from the host).
RUN mkdir -p /out/usr/local/lib/switchyard \
 && ldd /out/usr/local/bin/switchyard | awk '$2 == "=>" && $3 ~ /^\// {print $3}' \
    | grep -Ev '/(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|libcuda|libcudart|libcublas|libcublasLt|libnccl)\.so' \
    | xargs -I{} cp -L {} /out/usr/local/lib/switchyard/ \
 && ls /out/usr/local/lib/switchyard

# ---- gpu runtime: `docker build --target gpu -t switchyard:gpu .`
FROM ${CUDA_RUNTIME_IMAGE} AS gpu
COPY --from=build-gpu /out/usr/local/ /usr/local/
COPY configs /usr/share/switchyard/configs
RUN echo /usr/local/lib/switchyard > /etc/ld.so.conf.d/switchyard.conf && ldconfig \
 && ! ldd /usr/local/bin/switchyard | grep 'not found' \
 && groupadd --system --gid 65532 switchyard \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin switchyard
USER 65532:65532
EXPOSE 8000 50051
VOLUME /models
ENV SWITCHYARD_HEALTH_PORT=8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30m \
  CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${SWITCHYARD_HEALTH_PORT} && printf 'GET /health/ready HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["serve", "--model", "/models/model", "--device", "cuda", "--host", "0.0.0.0", "--port", "8000", "--grpc-port", "50051"]

# ---- cpu runtime (the default): Debian 12 slim plus the runtime packages of the binary's libraries.
FROM ${DEBIAN_RUNTIME_IMAGE} AS cpu
COPY --from=build /out/runtime-packages.txt /tmp/
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive xargs -a /tmp/runtime-packages.txt \
      apt-get install -y -qq --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /tmp/runtime-packages.txt \
 && groupadd --system --gid 65532 switchyard \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin switchyard
COPY --from=build /out/usr/local/bin/switchyard /usr/local/bin/switchyard
COPY configs /usr/share/switchyard/configs
RUN ! ldd /usr/local/bin/switchyard | grep 'not found'
USER 65532:65532
EXPOSE 8000 50051
VOLUME /models
# Readiness (200 once the weights are loaded and warmed up; 503 while loading or draining), with
# bash's /dev/tcp so that the image needs no HTTP client. Serving on another --port: set
# SWITCHYARD_HEALTH_PORT (`-e`) to it.
ENV SWITCHYARD_HEALTH_PORT=8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30m \
  CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${SWITCHYARD_HEALTH_PORT} && printf 'GET /health/ready HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["serve", "--model", "/models/model", "--host", "0.0.0.0", "--port", "8000", "--grpc-port", "50051"]
