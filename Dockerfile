# One image for every Loupe process; docker-compose picks the command.
# Build arg EXTRAS=ml (CPU, default) or EXTRAS=ml,gpu (GPU workers: onnxruntime-gpu).

# The browser front end (TypeScript, Vite) is built in its own stage; only its output ships.
FROM node:20-bookworm-slim AS frontend
WORKDIR /frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY frontend/tsconfig.json frontend/vite.config.ts ./
COPY frontend/src ./src
RUN npm run build

FROM python:3.11-slim-bookworm

ARG EXTRAS=ml
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    LOUPE_VAR_DIR=/var/lib/loupe LOUPE_STATIC_ROOT=/app/static DJANGO_SETTINGS_MODULE=loupe.settings \
    OMP_WAIT_POLICY=PASSIVE

RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --uid 10001 loupe

WORKDIR /app
COPY pyproject.toml README.md ./
COPY loupe ./loupe
COPY inspection ./inspection
COPY review ./review
COPY annotation ./annotation
COPY frontend ./frontend
COPY --from=frontend /frontend/static/frontend/app ./frontend/static/frontend/app
COPY workers ./workers
COPY manage.py ./

# GPU images take the CUDA build of torch from PyPI's default index instead.
RUN if echo "$EXTRAS" | grep -q gpu; then pip install "$TORCH_SPEC"; \
    else pip install --index-url "$TORCH_INDEX" "$TORCH_SPEC"; fi \
    && pip install ".[${EXTRAS}]" \
    && if echo "$EXTRAS" | grep -q gpu; then pip uninstall -y onnxruntime && pip install --force-reinstall --no-deps "onnxruntime-gpu==1.31.*"; fi

# collectstatic needs settings that load; these throwaway values never reach a running container.
RUN SECRET_KEY=build-only-not-secret DATABASE_URL=sqlite:////tmp/build.sqlite3 LOUPE_VAR_DIR=/tmp/build \
       python manage.py collectstatic --noinput --verbosity 0 \
    && rm -rf /tmp/build /tmp/build.sqlite3 \
    && mkdir -p /var/lib/loupe && chown loupe /var/lib/loupe

USER loupe
EXPOSE 8000
CMD ["python", "-m", "uvicorn", "loupe.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers", "--ws-max-size", "65536"]
