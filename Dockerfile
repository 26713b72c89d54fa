# The image of every SALE service (auctioneer, recorder, verifier, agents, monitor) for the
# many-machine shape in docker-compose.yml. One image, one console script: `sale <command>`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SALE_CONFIG=/etc/sale/sale.toml

# The sandbox runs model-written code with Debian's own python3 in a network namespace
# (util-linux's unshare, setpriv and prlimit are in the base image).
RUN apt-get update && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md* ./
COPY schemas ./schemas
COPY marketplace ./marketplace
COPY agents ./agents
RUN pip install . && rm -rf /src

RUN useradd --create-home --uid 10001 sale
USER sale
WORKDIR /home/sale

ENTRYPOINT ["sale"]
CMD ["--help"]
