"""WSGI entry point: `gunicorn wsgi:app`, and `flask --app wsgi ...` for the CLI."""

import sys

from config import ConfigError
from todo import create_app

try:
    app = create_app()
except ConfigError as error:
    # One clear line instead of a traceback, for gunicorn, Docker and the flask CLI alike.
    sys.exit(f"todo-api: configuration error: {error}")
