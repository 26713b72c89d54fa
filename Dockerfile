# The images of docker-compose.yml, one per target:
#
#   service       (the default: the last stage) every SALE service: auctioneer, recorder,
#                 verifier, monitor, the agents and the front door; `sale <command>`. The core
#                 dependencies and $SALE_EXTRAS only: no benchmark datasets or plots, no local
#                 broker, no models (the agents reach the model server over HTTP).
#   model-server  llama.cpp's OpenAI-compatible server (llama-cpp-python[server], the `models`
#                 extra) for the local GGUF models; `sale models install` fetches them at start.
#
#   docker build --target service -t sale .
#   docker build --target model-server -t sale-model-server .

FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SALE_CONFIG=/etc/sale/sale.toml

# The sandbox runs model-written code with Debian's own python3, in namespaces made by
# util-linux's unshare, setpriv and prlimit (in the base image already).
RUN apt-get update && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/*

# Services run as this uid, never as root: the sandbox then makes a user namespace of its own
# and needs no capability (docker-compose.yml, "The sandbox").
RUN useradd --create-home --uid 10001 sale

WORKDIR /src
COPY pyproject.toml README.md* ./
COPY schemas ./schemas
COPY marketplace ./marketplace
COPY agents ./agents


# Wheels of the project with the `models` extra, llama-cpp-python compiled from source among them
# (a compiler the model server's image does not keep). GGML_NATIVE=OFF builds for any x86-64 CPU
# with AVX2 rather than for this build machine's CPU; on the machine that runs the model server,
# --build-arg LLAMA_CMAKE_ARGS=-DGGML_NATIVE=ON builds for its own CPU (faster, not portable).
FROM base AS model-wheels
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF"
RUN CMAKE_ARGS="$LLAMA_CMAKE_ARGS" pip wheel --wheel-dir /wheels ".[models]"


FROM base AS model-server
# llama.cpp's CPU backend runs its threads with OpenMP.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=model-wheels /wheels /wheels
RUN pip install --no-index --find-links /wheels "sale-marketplace[models]" && rm -rf /wheels /src
# The models' volume is mounted here: a new named volume takes this directory's owner.
ENV SALE_MODELS_DIR=/models
RUN mkdir /models && chown sale:sale /models
USER sale
WORKDIR /home/sale
EXPOSE 8080
# Install (idempotent: instant once the volume holds the checked files), then serve every model
# of the config file by its alias.
CMD ["sh", "-c", "sale models install && exec python -m llama_cpp.server --config_file /etc/sale/model-server.json"]


FROM base AS service
# serve: the front door's web stack (`sale serve`). Add memory for the auction memory's task
# embeddings (torch: a large image), e.g. --build-arg SALE_EXTRAS=serve,memory.
ARG SALE_EXTRAS=serve
RUN pip install ".[$SALE_EXTRAS]" && rm -rf /src
USER sale
WORKDIR /home/sale
ENTRYPOINT ["sale"]
CMD ["--help"]
