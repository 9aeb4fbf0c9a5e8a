#!/bin/sh
# Runs migrations only when asked (MIGRATE_ON_START=1; with Neon, point MIGRATION_DATABASE_URL
# at the direct endpoint), then replaces itself with gunicorn so signals reach it directly.
set -eu
if [ "${MIGRATE_ON_START:-0}" = "1" ]; then
    flask --app wsgi db upgrade
fi
exec gunicorn --config gunicorn.conf.py wsgi:app
