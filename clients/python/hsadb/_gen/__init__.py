"""Generated protobuf modules (clients/python/gen.sh); not part of the API."""
