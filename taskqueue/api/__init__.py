"""The API on one port: REST (HTTP/1.1 and HTTP/2) and gRPC, served by hypercorn on trio."""
