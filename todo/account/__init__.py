"""The user's own data as a whole: `GET /api/{user_id}/export` (routes, and the streamed
document in export.py)."""
