"""Generated protobuf and gRPC modules (python/scripts/gen_stubs.sh); do not edit."""
