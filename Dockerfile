# todo-api production image: gunicorn serving wsgi:app as a non-root user.
#   docker build -t todo-api .
#   docker run -p 8000:8000 -e DATABASE_URL=... -e BETTER_AUTH_SECRET=... \
#       -e RATELIMIT_STORAGE_URI=redis://... -e MIGRATE_ON_START=1 todo-api
# compose.yaml runs it with PostgreSQL and Redis. Several workers refuse to start with
# rate-limit counters in process memory (RATELIMIT_STORAGE_URI's default).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    APP_ENV=production \
    PORT=8000

WORKDIR /app
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY config.py wsgi.py gunicorn.conf.py docker-entrypoint.sh ./
COPY todo ./todo
COPY migrations ./migrations
RUN mkdir -p /app/instance && chown app:app /app/instance && chmod 0755 docker-entrypoint.sh

USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=2)"]

ENTRYPOINT ["/app/docker-entrypoint.sh"]
