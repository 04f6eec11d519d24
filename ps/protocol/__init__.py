"""The data plane's protocol: what a worker and a shard say to each other, and nothing else.

Both sides import this package and nothing of each other: :mod:`ps.protocol.messages` (a push,
a pull request, the typed reply, row requests and pushes, the push status, a table's
configuration), :mod:`ps.protocol.wire` (their bytes on a stream socket),
:mod:`ps.protocol.shm` (same-node shared buffers), :mod:`ps.protocol.compression` (gradient
payloads) and :mod:`ps.protocol.buckets` (latency histograms as plain data). It imports only
numpy, torch and :mod:`ps.hashing`: no job, service or metrics code reaches a shard or a worker
through it.
"""
