# Read by the `flask` command only (python-dotenv, through Flask's CLI), so that
# `.venv/bin/flask ...` run from this checkout uses the development settings, as `make run`
# does. gunicorn and the Docker image never read it: they run production by default.
# The process environment wins: `APP_ENV=production .venv/bin/flask check` is production.
FLASK_APP=wsgi
APP_ENV=development
