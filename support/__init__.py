"""Support for tests, the bench and the tools: private databases and Redis namespaces, free
ports and waiting for servers, Redis binaries, a throw-away Redis Cluster, a PostgreSQL
primary with a streaming replica. Not part of the service (the Lambda zip holds only
app.py and chalicelib/)."""
