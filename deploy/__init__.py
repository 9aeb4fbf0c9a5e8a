"""Running several replicas of the service behind a load balancer: nginx's config
(`nginx.conf`), the topology on one machine (`cluster.py`, `make cluster`) and with images
(`compose.yaml`), and PgBouncer in transaction mode (`pgbouncer.py`)."""
