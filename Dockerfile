# One image for both tiers; the command picks the tier:
#   pullchat-http   the Sanic front end (HTTP_PORT, default 8080)
#   pullchat-rpc    the aiohttp RPC service under gunicorn (RPC_PORT, default 8888)
# docker-compose.yml runs both. Settings are environment variables (README.md, "Configuration").
#
# PYTHON_IMAGE is the base: the official python:3.11-slim by default, or any image with
# CPython 3.11, pip and useradd (deploy/local-base-images.sh builds one from Debian
# packages for machines that reach no container registry).
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from setup.cfg alone, so this layer is rebuilt only when
# setup.cfg changes: print install_requires (no extras) one per line, install those.
COPY setup.cfg ./
RUN python -c 'import configparser; c = configparser.ConfigParser(interpolation=None); c.read("setup.cfg"); print("\n".join(r for r in (s.strip() for s in c["options"]["install_requires"].splitlines()) if r and not r.startswith("#")))' > requirements.txt \
    && pip install -r requirements.txt \
    && rm requirements.txt

# Then the source (.dockerignore lets only the packages and their metadata in).
COPY . .
RUN pip install --no-deps . \
    && rm -rf build ./*.egg-info \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent pullchat

USER 10001:10001

EXPOSE 8080 8888
CMD ["pullchat-http"]
