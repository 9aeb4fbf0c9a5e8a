"""The changes feed: what changed in a user's tasks since a cursor (API.md, "Changes")."""
