"""The web front end: a JSON API (/api/v1, documented at /docs) and server-rendered pages over the same
public API the CLI uses. `imgsearch serve` runs it; create_app builds it for tests and other servers."""
