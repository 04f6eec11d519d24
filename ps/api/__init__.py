"""The gRPC API: servicer, auth interceptor, conversions and server lifecycle."""
