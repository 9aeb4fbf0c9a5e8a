"""How the service meets the network: a gunicorn worker that reads whole requests in its
event loop before a thread runs the application (`worker`), the framing that says when a
request is complete (`framing`), and the answers given before the application sees one
(`refusals`)."""
